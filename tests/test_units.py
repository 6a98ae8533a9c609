"""Pure functions and small classes, without a network."""

from __future__ import annotations

import random
from pathlib import Path

import blake3
import pytest

from giskard.address import DEFAULT_PORT, HubAddress, parse_address
from giskard.errors import UsageError
from giskard.hub.artifacts import ArtifactStore
from giskard.protocol import digest_of, iter_chunks
from giskard.worker.backoff import Backoff


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 3.0, random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(10)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(1.5 <= d <= 3.0 for d in delays[4:])
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay_s() <= 0.5


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("localhost:40051", "localhost", 40051),
        ("10.0.0.1", "10.0.0.1", DEFAULT_PORT),
        ("[::1]:9000", "::1", 9000),
        ("[::1]", "::1", DEFAULT_PORT),
    ],
)
def test_parse_address(text: str, host: str, port: int) -> None:
    assert parse_address(text) == HubAddress(host, port)


def test_ipv6_target_has_brackets() -> None:
    assert HubAddress("::1", 1).target == "[::1]:1"


@pytest.mark.parametrize(("host", "port"), [("", 1), (" ", 1), ("a b", 1), ("h", 0), ("h", 65536)])
def test_invalid_addresses(host: str, port: int) -> None:
    with pytest.raises(UsageError):
        HubAddress(host, port)


def test_iter_chunks_recuts_frames_without_losing_bytes() -> None:
    frames = [b"abc", memoryview(b"defgh"), b"", bytearray(b"ij")]
    assert list(iter_chunks(frames, chunk_size=4)) == [b"abcd", b"efgh", b"ij"]
    assert list(iter_chunks([], chunk_size=4)) == []


def test_the_address_of_frames_is_the_blake3_of_their_concatenation() -> None:
    frames = [b"abc", memoryview(b"def"), bytearray()]
    assert digest_of(frames) == (blake3.blake3(b"abcdef").hexdigest(), 6)
    # The published BLAKE3 digest of nothing: the address really is BLAKE3-256.
    empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert digest_of([]) == (empty, 0)


def test_artifact_store_evicts_least_recently_used_but_never_pinned() -> None:
    store = ArtifactStore(max_bytes=10)
    store.put("a", b"12345")
    store.put("b", b"12345")
    store.pin("a")
    store.get("b")
    store.put("c", b"12345")  # over the bound: "b" is older than "c" and "a" is pinned
    assert "a" in store and "b" not in store and "c" in store
    store.unpin("a")
    store.put("d", b"12345")
    assert "a" not in store and store.size_bytes == 10


def test_follow_file_keeps_following_across_rotation(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import PipeLines

    log = tmp_path / "ml-worker.log"
    log.write_text("old line\n")
    code = (
        "import pathlib, sys\n"
        "from giskard.installer.files import follow_file\n"
        "follow_file(pathlib.Path(sys.argv[1]), 5)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(log)], stdout=subprocess.PIPE, text=True
    ) as follower:
        try:
            assert follower.stdout is not None
            lines = PipeLines(follower.stdout)
            assert lines.next(timeout_s=10) == "old line\n"
            with log.open("a") as file:
                file.write("appended\n")
            assert lines.next(timeout_s=10) == "appended\n"
            log.rename(tmp_path / "ml-worker.log.1")
            log.write_text("after rotation\n")
            assert lines.next(timeout_s=10) == "after rotation\n"
        finally:
            follower.kill()
