"""What every system computes: the same fitted model, the same rows, the same trivial job."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SEED = 20240601
# The trivial job of the throughput measurement: operator.add(1, 2), pickled by reference.
TRIVIAL = (operator.add, 1, 2)


@dataclass
class Workload:
    model: Any  # a fitted scikit-learn Pipeline(StandardScaler, LogisticRegression)
    row: pd.DataFrame  # 1 row x 30 float64 features
    features: pd.DataFrame  # the 569 rows of breast_cancer
    big_rows: int

    def big_frame(self, rows: int | None = None) -> pd.DataFrame:
        """`rows` (default `big_rows`) rows sampled from breast_cancer with replacement (fixed
        seed), float64."""
        rng = np.random.default_rng(SEED)
        index = rng.integers(0, len(self.features), rows or self.big_rows)
        return self._frame(self.features.to_numpy(dtype=np.float64)[index])

    def repeated_frame(self, rows: int) -> pd.DataFrame:
        """breast_cancer's rows in order, repeated to `rows` rows: real data, as compressible
        as real tables are (columns of few distinct values, repeats)."""
        values = self.features.to_numpy(dtype=np.float64)
        return self._frame(np.resize(values, (rows, values.shape[1])))

    def random_frame(self, rows: int) -> pd.DataFrame:
        """Uniform random float64 in breast_cancer's columns: no compressor can shrink it."""
        return self._frame(np.random.default_rng(SEED).random((rows, len(self.features.columns))))

    def _frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(np.ascontiguousarray(values), columns=self.features.columns)


def make_workload(big_rows: int) -> Workload:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    features = data.data.astype(np.float64)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(features, data.target)
    row = features.iloc[[7]].reset_index(drop=True)
    return Workload(model=model, row=row, features=features, big_rows=big_rows)


class FreshFrames:
    """Frames equal to a base frame but for one cell, so each has a content hash of its own.

    The copy is made in `__call__`, outside any timing; the base frame is made once.
    """

    def __init__(self, base: pd.DataFrame) -> None:
        self.base = base
        self.count = 0

    def __call__(self) -> pd.DataFrame:
        self.count += 1
        frame = self.base.copy()
        frame.iat[0, 0] = frame.iat[0, 0] + self.count * 1e-9
        return frame


def predict(model: Any, data: Any) -> Any:
    """The remote function for Dask and Ray."""
    return model.predict(data)
