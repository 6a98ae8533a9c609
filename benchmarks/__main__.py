"""`python -m benchmarks`: every measurement, one run, one table. See benchmarks/README.md."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import importlib.metadata
import os
import pickle
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks import bench_giskard, bench_grpc, bench_inprocess, bench_link, bench_memory
from benchmarks.common import Settings, child_env, wait_until, with_deadline
from benchmarks.report import save_json, table
from benchmarks.results import Results
from benchmarks.workload import FreshFrames, Workload, make_workload

LATENCY = ("predict_p50", "predict_p99")
LATENCY_OBJECT = ("predict_obj_p50", "predict_obj_p99")
SYSTEM_MEASURES = ("predict_p50", "predict_p99", "throughput", "big_cold", "big_warm")
GISKARD_MEASURES = (
    "worker_connect",
    "worker_rss",
    "worker_tree_rss",
    *SYSTEM_MEASURES,
    *LATENCY_OBJECT,
    "throughput_threads",
    "worker_tree_rss_after",
)
PACKAGES = ("giskard-worker", "grpcio", "numpy", "pandas", "scikit-learn", "dask", "distributed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="giskard against raw gRPC, in-process calls, Dask and Ray, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations: a smoke run")
    parser.add_argument("--skip-dask", action="store_true", help="do not run Dask")
    parser.add_argument("--skip-ray", action="store_true", help="do not run Ray")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the raw numbers")
    parser.add_argument(
        "--grpc-transport",
        choices=("unix", "tcp"),
        default="unix",
        help="how the raw gRPC echo is dialled; default unix, as giskard on one machine",
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    # Dask's and Ray's worker processes import the remote functions from this package.
    os.environ["PYTHONPATH"] = child_env()["PYTHONPATH"]

    began = time.monotonic()
    context = _context(args, settings)
    print(
        f"giskard benchmarks{' (quick)' if args.quick else ''}: Python {context['python']}, "
        f"{context['cpus']} CPUs, {context['platform']}",
        flush=True,
    )
    work = make_workload(settings.big_rows)
    frames = FreshFrames(work.big_frame())
    payload = _payload(work)
    context["echo_payload_bytes"] = len(payload)
    results = Results()

    _phase("in-process")
    results.record("inprocess", LATENCY, lambda: bench_inprocess.latency(work, settings), True)
    big = functools.partial(bench_inprocess.big_predict, work, frames, settings)
    results.record("inprocess", ("big_warm",), big, True)
    if (cell := results.cells.get(("big_warm", "inprocess"))) is not None:
        results.cells[("big_cold", "inprocess")] = cell  # no cold/warm in-process: the same

    _phase(f"raw gRPC echo ({args.grpc_transport}, {len(payload)} B)")
    _run_grpc(results, payload, settings, args.grpc_transport)

    _phase("giskard (hub + worker subprocesses)")
    _run_giskard(results, work, frames, settings)
    _run_giskard_apart(results, work, settings)

    for name, skip, run in (("dask", args.skip_dask, _run_dask), ("ray", args.skip_ray, _run_ray)):
        if skip:
            results.skip(name, SYSTEM_MEASURES, "skipped")
            continue
        _phase(name)
        run(results, work, frames, settings)

    leftovers = _leftover_processes()
    rendered, verdicts = table(results)
    print()
    print(rendered)
    met = sum(v.met is True for v in verdicts)
    missed = sum(v.met is False for v in verdicts)
    print(
        f"\ntargets: {met} met, {missed} missed, {len(verdicts) - met - missed} n/a; "
        f"run took {time.monotonic() - began:.0f} s"
    )
    if results.errors:
        print("errors:")
        for error in results.errors:
            print(f"  {error}")
    if leftovers:
        print(f"warning: processes left behind: {', '.join(leftovers)}")
    if args.json:
        context["leftover_processes"] = leftovers
        context["duration_s"] = time.monotonic() - began
        save_json(args.json, results, verdicts, context)
        print(f"raw numbers saved to {args.json}")
    return 1 if results.errors else 0


def _leftover_processes(timeout_s: float = 10.0) -> list[str]:
    """Processes this run started that are still alive (each system was shut down)."""
    me = psutil.Process()

    def alive() -> list[psutil.Process]:
        running = []
        for process in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
        return running

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not alive(), timeout_s, "the systems' processes to exit")
    names = []
    for process in alive():
        with contextlib.suppress(psutil.Error):
            names.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
    return names


def _phase(name: str) -> None:
    print(f"- {name}", flush=True)


def _payload(work: Workload) -> bytes:
    """Random bytes the size of the 1-row frame as giskard encodes it (pickled, if it cannot)."""
    try:
        from giskard import codec

        size = len(codec.encode_to_bytes(work.row))
    except Exception:
        size = len(pickle.dumps(work.row))
    return os.urandom(size)


def _run_grpc(results: Results, payload: bytes, settings: Settings, transport: str) -> None:
    try:
        with bench_grpc.running_echo_server(transport) as target:
            client = bench_grpc.EchoClient(target)
            try:
                for system, measure in (
                    ("grpc_unary", bench_grpc.unary_latency),
                    ("grpc_bidi", bench_grpc.bidi_latency),
                ):
                    results.record(
                        system, LATENCY, lambda m=measure: m(client, payload, settings), True
                    )
                for key, rate in (
                    ("throughput", bench_grpc.unary_rate),
                    ("throughput_threads", bench_grpc.unary_rate_threads),
                ):
                    results.record(
                        "grpc", (key,), lambda r=rate: r(client, payload, settings), True
                    )
            finally:
                client.close()
    except Exception as exc:
        for system in ("grpc_unary", "grpc_bidi"):
            results.fail(system, LATENCY, exc)
        results.fail("grpc", ("throughput", "throughput_threads"), exc)


def _run_giskard(results: Results, work: Workload, frames: FreshFrames, settings: Settings) -> None:
    def record(measures: tuple[str, ...], measure: Callable[[], Any]) -> None:
        what = "/".join(measures)
        results.record(
            "giskard", measures, lambda: with_deadline(measure, settings.deadline_s, what), True
        )

    record(("cli_help",), lambda: bench_giskard.cli_help_ms(settings))
    with tempfile.TemporaryDirectory(prefix="bench-giskard-") as tmp:
        home = Path(tmp)
        with bench_giskard.giskard_home(home):
            try:
                hub, port = bench_giskard.start_hub(home)
            except Exception as exc:
                results.fail("giskard", GISKARD_MEASURES, exc)
                return
            worker = client = None
            try:
                record(
                    ("worker_connect",),
                    lambda: bench_giskard.worker_connect_s(home, port, settings),
                )
                worker = bench_giskard.connected_worker(home, port)
                time.sleep(1.0)  # idle on purpose: the RSS of a worker that sat idle ~1 s
                idle = worker.process.pid
                record(("worker_rss", "worker_tree_rss"), lambda: _rss(idle))
                from giskard.client import HubClient

                client = HubClient(f"127.0.0.1:{port}")
                bench_giskard.wait_for_active_worker(client)
                record(LATENCY, lambda: bench_giskard.predict_latency(client, work, settings, True))
                record(
                    LATENCY_OBJECT,
                    lambda: bench_giskard.predict_latency(client, work, settings, False),
                )
                record(("throughput",), lambda: bench_giskard.trivial_rate(client, settings))
                record(
                    ("throughput_threads",),
                    lambda: bench_giskard.threaded_call_rate(client, settings),
                )
                record(
                    ("big_cold",), lambda: bench_giskard.big_cold_s(client, work, frames, settings)
                )
                record(
                    ("big_warm",), lambda: bench_giskard.big_warm_s(client, work, frames, settings)
                )
                record(("worker_tree_rss_after",), lambda: _rss(idle)["worker_tree_rss"])
            except Exception as exc:
                results.fail("giskard", GISKARD_MEASURES, exc)
            finally:
                if client is not None:
                    client.close()
                if worker is not None:
                    worker.stop()
                hub.stop()
                if any(error.startswith("giskard ") for error in results.errors):
                    # The client sees a status; the why is often in the hub's or worker's log.
                    for name, process in (("hub", hub), ("worker", worker)):
                        for line in bench_giskard.problems(process):
                            results.errors.append(f"  {name} log: {line}")


def _run_giskard_apart(results: Results, work: Workload, settings: Settings) -> None:
    """The measurements that need a hub and a worker of their own."""
    size = f"{settings.memory_frame_bytes / 2**20:.0f} MiB"
    _phase(f"giskard, peak memory of a cold predict of a {size} frame (new hub + worker)")
    _record_apart(results, bench_memory.MEASURES, bench_memory.peak_rss, work, settings)
    _phase(f"giskard over a 1 Gbit/s link, {settings.link_rows:,} rows (hub, worker: 2 netns)")
    _record_apart(results, bench_link.MEASURES, bench_link.cold_over_link, work, settings)


def _record_apart(
    results: Results,
    measures: tuple[str, ...],
    measure: Callable[[Workload, Settings], dict[str, Any]],
    work: Workload,
    settings: Settings,
) -> None:
    run = functools.partial(measure, work, settings)
    what = measure.__name__
    results.record("giskard", measures, lambda: with_deadline(run, settings.deadline_s, what), True)


def _rss(pid: int) -> dict[str, Any]:
    own, total, children = bench_giskard.rss_mib(pid)
    return {"worker_rss": own, "worker_tree_rss": total, "children": children}


def _run_dask(results: Results, work: Workload, frames: FreshFrames, settings: Settings) -> None:
    try:
        from benchmarks import bench_dask

        with bench_dask.running_cluster() as client:
            bench = bench_dask.DaskBench(client, work)
            _run_system(results, "dask", bench, frames, settings)
    except ImportError as exc:
        results.skip("dask", SYSTEM_MEASURES, f"not installed ({exc.name}); make bench")
    except Exception as exc:
        results.fail("dask", SYSTEM_MEASURES, exc)


def _run_ray(results: Results, work: Workload, frames: FreshFrames, settings: Settings) -> None:
    try:
        from benchmarks import bench_ray

        with bench_ray.running_ray() as ray:
            bench = bench_ray.RayBench(ray, work)
            _run_system(results, "ray", bench, frames, settings)
    except ImportError as exc:
        results.skip("ray", SYSTEM_MEASURES, f"not installed ({exc.name}); make bench")
    except Exception as exc:
        results.fail("ray", SYSTEM_MEASURES, exc)


def _run_system(
    results: Results, system: str, bench: Any, frames: FreshFrames, settings: Settings
) -> None:
    results.record(system, LATENCY, lambda: bench.latency(settings), True)
    results.record(system, ("throughput",), lambda: bench.rate(settings), True)
    results.record(system, ("big_cold",), lambda: bench.big_cold(frames, settings), True)
    results.record(system, ("big_warm",), lambda: bench.big_warm(frames, settings), True)


def _context(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    versions = {}
    for name in (*PACKAGES, "ray"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "executable": sys.executable,
        "grpc_transport": args.grpc_transport,
        "settings": vars(settings),
        "versions": versions,
    }


if __name__ == "__main__":
    sys.exit(main())
