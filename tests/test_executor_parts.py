"""The executor's building blocks, without processes: framing, cache, sizes, plain encoding."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from giskard import codec
from giskard.codec_plain import encode_plain
from giskard.protocol import pieces
from giskard.sizes import format_size, parse_size
from giskard.worker import jobs
from giskard.worker.cache import ObjectCache
from giskard.worker.executor import describe_exit
from giskard.worker.pipe import PipeIn, PipeOut


def test_pieces_recut_frames_without_copying() -> None:
    frames = [b"abc", memoryview(b"defgh"), b"", b"ij"]
    groups = list(pieces(frames, 4))
    assert [b"".join(g) for g in groups] == [b"abcd", b"efgh", b"ij"]
    assert all(isinstance(view, memoryview) for group in groups for view in group)


def test_a_message_crosses_a_real_pipe_header_and_payload() -> None:
    read_fd, write_fd = os.pipe()
    out, into = PipeOut(write_fd), PipeIn(read_fd)
    out.send({"t": "chunk", "n": 1}, [memoryview(b"hello "), memoryview(b"world")])
    header, length = into.read()
    assert (header, length) == ({"t": "chunk", "n": 1}, 11)
    target = bytearray(11)
    into.read_into(memoryview(target))
    assert target == b"hello world"
    os.close(write_fd)
    into.close()


def test_the_cache_evicts_least_recently_used_but_never_the_running_jobs_inputs() -> None:
    cache = ObjectCache(max_bytes=10)
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    cache.get("a")  # b is now the least recently used
    cache.put("c", "C", 4, keep={"b", "c"})  # b is kept: the running job uses it
    assert "b" in cache and "c" in cache and "a" not in cache
    assert cache.take_changes() == (["a", "b", "c"], ["a"])
    cache.put("huge", "H", 11)  # bigger than the whole cache: not held
    assert "huge" not in cache and cache.size_bytes == 8
    assert cache.take_changes() == ([], [])


def test_the_cache_caps_its_entry_count() -> None:
    cache = ObjectCache(max_bytes=10**9, max_entries=3)
    for key in "abcd":
        cache.put(key, key, 1)
    assert "a" not in cache and all(key in cache for key in "bcd")


def test_the_cache_caps_the_entries_that_hold_a_mapping_each_a_descriptor() -> None:
    cache = ObjectCache(max_bytes=10**9, max_mapped=2)
    cache.put("plain", "P", 1)
    for key in "abc":
        cache.put(key, key, 1, mapped=True)
    # The least recently used mapping goes; the unmapped entry, older still, stays.
    assert "a" not in cache and all(key in cache for key in ("plain", "b", "c"))
    cache.get("b")
    cache.put("d", "D", 1, mapped=True, keep={"c", "d"})  # c is the running job's: kept
    assert "b" not in cache and all(key in cache for key in ("plain", "c", "d"))


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 1024**2), ("2G", 2 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2), ("100", 100)],
)
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_size_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="512M"):
        parse_size("lots")
    assert format_size(3 * 1024**3 // 2) == "1.5 GiB"


@pytest.mark.parametrize(
    "value", [None, 1, -(2**63), "é", 2.5, math.inf, [1, [2, {"a": None}]], {"k": (1, 2)}]
)
def test_the_light_encoder_writes_exactly_what_the_codec_writes(value: object) -> None:
    assert encode_plain(value) == codec.encode_to_bytes(value)


def test_exits_are_described_by_signal_or_code() -> None:
    assert describe_exit(-11) == "killed by SIGSEGV"
    assert describe_exit(3) == "exited with code 3"


def test_shielded_inputs_cannot_be_changed_in_place() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    view = jobs.shielded(frame)
    view["a"] = 0.0
    view.loc[0, "a"] = 5.0
    assert frame["a"].tolist() == [1.0, 2.0]
    array = jobs.shielded(np.arange(3))
    with pytest.raises(ValueError, match="read-only"):
        array[0] = 9


def test_batched_predict_joins_arrays_frames_and_lists() -> None:
    data = pd.DataFrame({"x": np.arange(50_000.0)})
    reports: list[tuple[int, int]] = []

    class Doubling:
        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return frame["x"].to_numpy() * 2

        def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
            return frame * 2

        def predict_list(self, frame: pd.DataFrame) -> list:
            return (frame["x"] * 2).tolist()

    model = Doubling()
    expected = data["x"].to_numpy() * 2
    result = jobs.predict(model, data, "predict", lambda d, t: reports.append((d, t)))
    np.testing.assert_array_equal(result, expected)
    assert reports[0] == (0, 50_000) and reports[-1] == (50_000, 50_000) and len(reports) == 6
    pd.testing.assert_frame_equal(jobs.predict(model, data, "predict_frame", print), data * 2)
    assert jobs.predict(model, data, "predict_list", lambda d, t: None) == expected.tolist()


def test_a_failure_too_big_for_a_pipe_header_keeps_its_reason_and_says_so() -> None:
    from giskard.worker.executor_main import _within_a_header
    from giskard.worker.pipe import MAX_HEADER_BYTES, pack

    differences = [
        {
            "worker": "w",
            "what": f"d{n}",
            "required": "\U0001f600" * 100,
            "found": "",
            "blocking": True,
        }
        for n in range(2000)
    ]
    failure = {
        "t": "failure",
        "type": "IncompatibleEnvironment",
        "reason": 9,
        "message": "it needs what is not here",
        "traceback": "Traceback ...",
        "differences": differences,
    }
    assert len(pack(failure)) > MAX_HEADER_BYTES
    sent = _within_a_header(failure)
    assert len(pack(sent)) < MAX_HEADER_BYTES
    assert (sent["type"], sent["reason"]) == ("IncompatibleEnvironment", 9)
    assert "too big to send; it began: it needs what is not here" in sent["message"]
    small = failure | {"differences": differences[:1]}
    assert _within_a_header(small) is small
