"""Models defined by the tests. conftest registers this module to be pickled by value, as a
notebook's classes are, because the worker cannot import it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd


class FailingModel:
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        raise ValueError(f"cannot predict on {len(data)} rows")


class FrameModel:
    """Returns a DataFrame, as some wrappers do."""

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score": data.iloc[:, 0] * 2.0, "label": ["a"] * len(data)})


class SlowModel:
    """Announces that it started (a file), then takes `seconds`."""

    def __init__(self, started_marker: Path, seconds: float) -> None:
        self.started_marker = started_marker
        self.seconds = seconds

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self.started_marker.write_text(str(os.getpid()))
        time.sleep(self.seconds)
        return np.arange(len(data))


class UnsendableResultModel:
    def predict(self, data: pd.DataFrame) -> object:
        return {1, 2, 3}


class BigResultModel:
    """Returns `megabytes` of float64 per call, whatever the input."""

    def __init__(self, megabytes: int) -> None:
        self.megabytes = megabytes

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return np.arange(self.megabytes * 1024 * 1024 // 8, dtype=np.float64)
