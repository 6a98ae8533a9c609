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


def fail_loudly() -> None:
    """Prints, logs, then raises: what a failing job leaves for its reader."""
    import logging

    print("loading the <model> & its weights")
    logging.getLogger("user.model").warning("the weights look odd")
    raise ValueError("cannot go on with 'these' weights")


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


class HeldModel:
    """Announces that it started (a file), then runs until the test lets it end by creating
    `release`: one number per row then, or an error past `cap_s` (a test that forgot it)."""

    def __init__(self, started_marker: Path, release: Path, cap_s: float = 120) -> None:
        self.started_marker = started_marker
        self.release = release
        self.cap_s = cap_s

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self.started_marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + self.cap_s
        while not self.release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not released within {self.cap_s:g} s")
            time.sleep(0.05)
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


class Wrapped:
    """A real fitted model with a failure mode in front of it: what a platform would send."""

    def __init__(self, model: object, started_marker: Path | None = None) -> None:
        self.model = model
        self.started_marker = started_marker

    def _started(self) -> None:
        if self.started_marker is not None:
            self.started_marker.write_text(str(os.getpid()))


class SegfaultingModel(Wrapped):
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        import ctypes

        self._started()
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return self.model.predict(data)


class ExitingModel(Wrapped):
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self._started()
        os._exit(3)


class GreedyModel(Wrapped):
    """Allocates (and touches) `gigabytes` before predicting."""

    gigabytes = 4

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self._started()
        ballast = np.ones(self.gigabytes * 1024**3 // 8)
        return self.model.predict(data) + ballast[:1].astype(int) * 0


class LoopingModel(Wrapped):
    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self._started()
        while True:
            pass


class PacedModel(Wrapped):
    """Takes `seconds` per predict call on top of the real model's work."""

    seconds = 0.15

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        time.sleep(self.seconds)
        return self.model.predict(data)


class SleepyModel(Wrapped):
    """Announces that it started, sleeps `seconds`, then predicts with the real model."""

    def __init__(self, model: object, started_marker: Path, seconds: float) -> None:
        super().__init__(model, started_marker)
        self.seconds = seconds

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        self._started()
        time.sleep(self.seconds)
        return self.model.predict(data)


class ForkingExitModel(Wrapped):
    """Forks a child that sleeps (holding every inherited descriptor), then dies."""

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        self._started()
        os._exit(4)


def start_and_hold(argv: list[str], marker: Path, *, in_c: bool = False) -> None:
    """Starts `argv` twice, in the executor's process group and in a session of its own,
    writes their pids to `marker`, then runs until it is stopped: in Python, or in C code
    that holds the GIL and never looks at signals (a regular expression backtracking)."""
    import re
    import subprocess

    children = [subprocess.Popen(argv), subprocess.Popen(argv, start_new_session=True)]
    marker.write_text(" ".join(str(child.pid) for child in children))
    while True:
        if in_c:
            re.match(r"(a+)+$", "a" * 64 + "b")
        time.sleep(1)


def print_lines(prefix: str, count: int) -> int:
    """Prints `count` numbered lines: "PREFIX 00000000", and so on."""
    import sys

    for i in range(count):
        sys.stdout.write(f"{prefix} {i:08d}\n")
    return count


def raise_with_a_long_type_name(chars: int) -> None:
    """Raises an exception whose class name is `chars` characters long: what a worker says of
    a failure is its own word, of any size."""
    kind = type("E" * chars, (Exception,), {})
    raise kind("its type name is longer than any real one")


def raise_a_huge_message(chars: int) -> None:
    """Raises a ValueError whose message is `chars` characters of text that JSON escapes to
    six bytes each, after a marker that must survive."""
    raise ValueError("the start of a huge message " + "\x01" * chars)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


def raise_unprintable() -> None:
    """Raises an exception whose str() raises in turn."""
    raise _Unprintable()


def run_out_of_memory_with_a_huge_message(chars: int) -> None:
    """Raises MemoryError with `chars` characters that JSON escapes to twelve bytes each."""
    raise MemoryError("\U0001f600" * chars)
