"""The executor process: runs the jobs' user code for the worker, one job at a time.

The worker starts it (`python -m giskard.worker.executor_main`) and talks to it over two
pipes it passes (see giskard.worker.pipe); its stdout and stderr go to the worker's log and to
the job's own logs (see giskard.worker.job_output). It stays alive between jobs, so imports
and the cache of models and datasets stay warm; the worker kills it and starts another when
a job must stop (timeout, cancel) or has broken it (a crash, memory beyond the limit).

A job's `logging` records reach its stderr through logging's last-resort handler (warnings
and above), as in a script that sets up no logging: no handler is installed here, so that a
job's own `logging.basicConfig` still takes effect.

A job is a header naming its inputs; each input the executor lacks follows, in order, as
chunks or, for a big one (see giskard.shared_memory), as one message naming the sealed memfd
that the executor maps and decodes in place. The answer is progress messages, then a
result (followed by its chunks) or a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from giskard import compat, progress, shared_memory
from giskard.errors import EndReason
from giskard.process_tree import become_subreaper, kill_descendants, set_parent_death_signal
from giskard.protocol import CHUNK_SIZE, digest_of, pieces
from giskard.worker import jobs
from giskard.worker.cache import ObjectCache
from giskard.worker.pipe import MAX_HEADER_BYTES, PipeClosed, PipeIn, PipeOut, pack

PROGRESS_INTERVAL_S = 0.1


class _Aborted(Exception):
    """The worker could not deliver an input (it says why); the job fails."""


class Executor:
    def __init__(self, pipe_in: PipeIn, pipe_out: PipeOut, cache: ObjectCache, max_job_memory: int):
        self._in = pipe_in
        self._out = pipe_out
        self._cache = cache
        self._max_job_memory = max_job_memory
        self._pristine = _ProcessState.current()

    def serve(self) -> None:
        """Run jobs until the worker closes the pipe."""
        self._out.send({"t": "ready", "pid": os.getpid()})
        while True:
            try:
                header, payload_len = self._in.read()
            except PipeClosed:
                return
            if header.get("t") != "job" or payload_len:
                raise PipeClosed(f"expected a job, got {header!r}")
            self._run(header)

    def _run(self, header: dict[str, Any]) -> None:
        inputs = header["inputs"]
        answer: dict[str, Any]
        frames: list[Any] = []
        with _memory_limited(self._max_job_memory) as limited:
            try:
                blobs = self._receive(inputs)
                values = self._values(inputs, blobs, header.get("requirements"))
                progress.set_reporter(self._reporter() if header.get("progress") else None)
                frames = jobs.encode_result(_compute(header, values))
                address, size = digest_of(frames)
                answer = {"t": "result", "address": address, "size": size}
            except _Aborted as exc:  # the worker could not run it: not the job's fault
                answer = {"t": "failure", "type": "InputUnavailable", "message": str(exc)}
                answer["reason"] = EndReason.WORKER_LOST
            except MemoryError as exc:
                answer = {"t": "failure", **_memory_failure(exc, limited), "replace": True}
            except jobs.IncompatibleEnvironment as exc:
                answer = {
                    "t": "failure",
                    **jobs.failure_from(exc),
                    "type": "IncompatibleEnvironment",
                }
                answer["reason"] = EndReason.INCOMPATIBLE_ENVIRONMENT
                answer["differences"] = [dataclasses.asdict(diff) for diff in exc.differences]
            except BaseException as exc:  # user code may raise SystemExit or KeyboardInterrupt
                answer = {"t": "failure", **jobs.failure_from(exc)}
                answer["reason"] = EndReason.MODEL_ERROR
            finally:
                progress.set_reporter(None)
        # What the job started ends with it, and the next job starts where this one did. A
        # job that left processes gets a fresh executor: libraries keep pools of processes
        # from one call to the next (joblib's loky), and would find them dead.
        if kill_descendants() or not self._pristine.restore():
            answer["replace"] = True
        # Before the answer: the worker tags what is in the pipes then as this job's output.
        _flush_output()
        added, evicted = self._cache.take_changes()
        answer |= {"added": added, "evicted": evicted}
        self._send_answer(answer, frames)

    def _receive(self, inputs: list[dict[str, Any]]) -> dict[str, bytearray | memoryview]:
        """The inputs sent with the job, read in full even when memory runs out (the stream must
        stay in step). Not hashed again: the hub checked each against its address, and this
        executor's own worker relays them. After an abort the worker sends nothing more for
        the job."""
        blobs: dict[str, bytearray | memoryview] = {}
        problem: BaseException | None = None
        for spec in inputs:
            if not spec["send"]:
                continue
            receive = self._receive_shared if spec.get("shared") else self._receive_piped
            blob, trouble = receive(spec)
            problem = problem or trouble
            if blob is not None:
                blobs[spec["address"]] = blob
        if problem is not None:
            raise problem
        return blobs

    def _receive_piped(self, spec: dict[str, Any]) -> tuple[bytearray | None, BaseException | None]:
        """An input sent through the pipe, and why it could not be kept (memory)."""
        try:
            blob, problem = bytearray(spec["size"]), None
        except MemoryError as exc:
            blob, problem = None, exc
        aborted = self._read_chunks(blob, spec["size"])
        if aborted is not None:
            raise aborted  # the worker sends nothing more for this job
        return blob, problem

    def _receive_shared(
        self, spec: dict[str, Any]
    ) -> tuple[memoryview | None, BaseException | None]:
        """An input the worker shares: a read-only mapping of its sealed memfd, which the
        values decoded from it keep alive (in the cache too) and nothing else does."""
        header, length = self._in.read()
        if header.get("t") == "abort":
            raise _aborted(header)
        if header.get("t") != "shared" or length:
            raise PipeClosed("expected a shared input: the stream is out of step")
        try:
            return shared_memory.map_input(header["path"], spec["size"]), None
        except (OSError, ValueError, shared_memory.SharedMemoryError) as exc:
            return None, _Aborted(f"could not map input {spec['address'][:12]}: {exc}")

    def _read_chunks(self, blob: bytearray | None, size: int) -> _Aborted | None:
        """Read an input into `blob` (or discard it); what the worker said if it gave up."""
        view = memoryview(blob) if blob is not None else None
        received = 0
        while received < size:
            header, length = self._in.read()
            if header.get("t") == "abort":
                return _aborted(header)
            if received + length > size:
                raise PipeClosed("an input longer than announced: the stream is out of step")
            if view is None:
                self._in.read_payload(length)
            else:
                self._in.read_into(view[received : received + length])
            received += length
        return None

    def _values(
        self,
        inputs: list[dict[str, Any]],
        blobs: dict[str, bytearray | memoryview],
        requirements: Mapping[str, Any] | None,
    ) -> list[Any]:
        """The job's input values, from what was sent or from the cache (an input named twice
        is sent and loaded once). Pickles are loaded knowing what they need (`requirements`,
        which the worker sends with the pickles it sends)."""
        keep = {spec["address"] for spec in inputs}
        loaded: dict[str, Any] = {}
        for spec in inputs:
            address = spec["address"]
            if address in loaded:
                continue
            if address in blobs:
                blob = blobs[address]
                if spec["form"] == "pickle":
                    loaded[address] = jobs.load_pickle(blob, _requirements(requirements))
                else:
                    loaded[address] = jobs.load_data(blob)
                # A memoryview is a shared input's mapping, which a dataset decoded from it keeps.
                mapped = isinstance(blob, memoryview)
                self._cache.put(address, loaded[address], len(blob), keep=keep, mapped=mapped)
            elif address in self._cache:
                loaded[address] = self._cache.get(address)
            else:
                raise RuntimeError(f"input {address[:12]} was neither sent nor cached")
        return [
            jobs.shielded(loaded[spec["address"]])
            if spec["form"] == "data"
            else loaded[spec["address"]]
            for spec in inputs
        ]

    def _reporter(self) -> Any:
        last_sent = 0.0

        def report(done: int, total: int) -> None:
            nonlocal last_sent
            now = time.monotonic()
            # Rate-limited, but the last step always goes out.
            if done >= total or now - last_sent >= PROGRESS_INTERVAL_S:
                last_sent = now
                self._out.send({"t": "progress", "done": done, "total": total})

        return report

    def _send_answer(self, answer: dict[str, Any], frames: list[Any]) -> None:
        if answer["t"] != "result":
            self._out.send(_within_a_header(answer))
            return
        groups = pieces(frames, CHUNK_SIZE)
        if answer["size"] <= CHUNK_SIZE:
            self._out.send(answer, next(groups, []))
            return
        self._out.send(answer)
        for group in groups:
            self._out.send({"t": "chunk"}, group)


def _within_a_header(failure: dict[str, Any]) -> dict[str, Any]:
    """`failure` as sent: one whose text (the job's own, a client's requirements in its
    differences) would not fit in a pipe header keeps its reason and type, and says so in
    a shorter message instead of being taken for a crash."""
    size = len(pack(failure))
    if size <= MAX_HEADER_BYTES:
        return failure
    kept = {k: v for k, v in failure.items() if k not in ("message", "traceback", "differences")}
    message = f"its report ({size} bytes) was too big to send; it began: {failure['message']}"
    return kept | {
        "message": jobs.cut(message, 1024),
        "traceback": failure.get("traceback", "")[-4096:],
    }


@dataclass(frozen=True)
class _ProcessState:
    """What a job may change in its process and the next job must not inherit. Restoring it
    checks first, so that a job that changed nothing costs a few microseconds."""

    cwd: str
    environ: dict[str, str]
    encoded_environ: dict[Any, Any]
    umask: int

    @classmethod
    def current(cls) -> _ProcessState:
        umask = os.umask(0o022)
        os.umask(umask)
        return cls(os.getcwd(), dict(os.environ), dict(_encoded_environ()), umask)

    def restore(self) -> bool:
        """Back to this state; False if the directory is gone (the executor is replaced)."""
        os.umask(self.umask)
        if _encoded_environ() != self.encoded_environ:
            # Through os.environ, so that putenv/unsetenv reach the C library's environment
            # too, which the job's subprocesses and C extensions read.
            os.environ.clear()
            os.environ.update(self.environ)
        with contextlib.suppress(OSError):  # OSError: the job removed its directory
            if os.getcwd() == self.cwd:
                return True
        try:
            os.chdir(self.cwd)
        except OSError:
            return False
        return True


def _encoded_environ() -> Mapping[Any, Any]:
    """os.environ's own dict of encoded names and values (CPython keeps one): comparing it is
    a loop in C, about 1 µs, where comparing os.environ decodes every variable (about 50 µs
    for 35 variables, at every job)."""
    return getattr(os.environ, "_data", os.environ)


def _aborted(header: dict[str, Any]) -> _Aborted:
    return _Aborted(header.get("message", "the worker could not fetch an input"))


def _requirements(plain: Mapping[str, Any] | None) -> compat.Requirements:
    return compat.NOTHING if plain is None else compat.Requirements.from_plain(plain)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a job may have closed or replaced them
            stream.flush()


def _compute(header: dict[str, Any], values: list[Any]) -> Any:
    if header["kind"] == "predict":
        report = progress.report_progress if header.get("progress") else None
        return jobs.predict(values[0], values[1], header["method"], report)
    names = header["kwargs"]
    args = values[1 : len(values) - len(names)]
    kwargs = dict(zip(names, values[len(values) - len(names) :], strict=True))
    return jobs.call(values[0], args, kwargs)


@contextlib.contextmanager
def _memory_limited(max_job_memory: int) -> Iterator[bool]:
    """Let the job allocate at most `max_job_memory` bytes more than the executor holds now
    (RLIMIT_DATA counts heap and anonymous mappings: numpy raises MemoryError beyond it)."""
    used = _data_bytes() if max_job_memory else None
    if used is None:
        yield False
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = used + max_job_memory
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield True
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _data_bytes() -> int | None:
    """The process's data segment size (Linux); None where it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _memory_failure(exc: MemoryError, limited: bool) -> dict[str, str]:
    failure = jobs.failure_from(exc) | {"reason": EndReason.MODEL_ERROR}
    if limited:
        failure["reason"] = EndReason.MEMORY_LIMIT
        failure["type"] = "MemoryLimitExceeded"
        said = "the job needed more memory than the worker's --max-job-memory allows: "
        said += failure["message"]
        failure["message"] = jobs.cut(said.rstrip(": "), jobs.FAILURE_MESSAGE_MAX_CHARS)
    return failure


def _end_with_parent(parent_pid: int) -> None:
    """Stopped by the kernel when the worker dies, even by SIGKILL (Linux): SIGSTOP holds
    even user code stuck in C, and a stopped executor still adopts its job's orphans (it is
    their subreaper), so the worker's janitor (giskard.janitor) finds and kills every
    process of the job. Elsewhere, the janitor kills the executor's process group."""
    become_subreaper()
    set_parent_death_signal(signal.SIGSTOP)
    if os.getppid() != parent_pid:  # the worker died before prctl took effect
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="giskard-executor")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--cache-bytes", type=int, required=True)
    parser.add_argument("--max-job-memory", type=int, default=0)
    parser.add_argument("--pipe-in", type=int, required=True)
    parser.add_argument("--pipe-out", type=int, required=True)
    args = parser.parse_args(argv)
    _end_with_parent(args.parent_pid)
    # Ctrl-C in a terminal reaches the whole process group; the worker decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Programs a job starts (subprocess) must not inherit them. Children it forks do: the
    # worker watches this process's exit, not the pipes' end, to know it is gone.
    os.set_inheritable(args.pipe_in, False)
    os.set_inheritable(args.pipe_out, False)
    pipe_in, pipe_out = PipeIn(args.pipe_in), PipeOut(args.pipe_out)
    # stdout is a pipe to the worker's log: line by line, as on a terminal, not in 8 KiB blocks.
    sys.stdout.reconfigure(line_buffering=True)
    # Warm: the first job should not pay for these imports.
    import cloudpickle  # noqa: F401

    from giskard import codec  # noqa: F401

    cache = ObjectCache(args.cache_bytes)
    with contextlib.suppress(PipeClosed):  # the worker is gone
        Executor(pipe_in, pipe_out, cache, args.max_job_memory).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
