"""The console's worker pages over real HTTP, with a real hub and real worker processes: one
worker's identity, environment and packages (filtered by ?q=), what its cache holds, its
jobs per minute; the bytes the hub moved, on /metrics."""

from __future__ import annotations

import asyncio
import html
import queue
import re
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until
from console_http import log_in, request
from test_console import metrics
from test_hub_hardening import ScriptedRogue, refusal_of

import giskard.hub.jobs
from giskard import codec
from giskard.client import HubClient, Stored
from giskard.hub import Hub
from giskard.hub.artifacts import ArtifactStore
from giskard.hub.console import history
from giskard.hub.job import Job
from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.jobs import JobBoard
from giskard.hub.registry import WorkerRegistry, WorkerSession
from giskard.protocol import PROTOCOL_VERSION, digest_of
from giskard.rpc.v1 import common_pb2, worker_pb2, worker_pb2_grpc

CONSOLE = {"console_port": 0}


def page(hub: Hub, path: str) -> str:
    reply = request(
        hub.console_port, path, headers={"Cookie": log_in(hub.console_port, hub.admin_key)}
    )
    assert reply.status == 200, reply.body
    return html.unescape(reply.body)


def listed_packages(body: str) -> list[str]:
    found = re.search(r'<ul id="packages">(.*?)</ul>', body, re.DOTALL)
    assert found is not None, body
    return re.findall(r'<li data-name="([^"]+)"', found.group(1))


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_workers_page_shows_its_identity_environment_and_packages(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    table = page(hub, "/workers")
    assert f'href="/workers/{worker["name"]}"' in table
    for ref in (worker["name"], worker["worker_id"]):
        body = page(hub, f"/workers/{ref}")
        cells = dict(re.findall(r"<th>([^<]+)</th>\s*<td[^>]*>(.*?)</td>", body, re.DOTALL))
        for label, key in [
            ("Interpreter", "interpreter"),
            ("Python", "python_version"),
            ("Platform", "platform"),
            ("Host", "hostname"),
            ("PID", "pid"),
            ("giskard", "giskard_version"),
        ]:
            assert re.sub(r"<[^>]+>", "", cells[label]).strip() == str(worker[key]), label
        assert "active" in cells["State"]
        assert cells["Jobs"].strip() == f"0/{worker['concurrency']}"
        assert sorted(listed_packages(body)) == sorted(p.lower() for p in worker["packages"])


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_q_filters_a_workers_packages_without_javascript(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    shown = listed_packages(page(hub, f"/workers/{worker['name']}?q=SciKit"))
    assert "scikit-learn" in shown
    assert "typer" not in shown
    assert all("scikit" in name for name in shown), shown


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_unknown_worker_is_a_404(hub: Hub) -> None:
    session = log_in(hub.console_port, hub.admin_key)
    reply = request(hub.console_port, "/workers/nobody", headers={"Cookie": session})
    assert reply.status == 404
    assert "no such worker" in reply.body


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_the_page_of_a_worker_that_left_says_when_and_why(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    (worker,) = client.workers()
    assert connected_worker.stop() == 0
    wait_until(lambda: not client.workers(), 10.0, "the worker gone from the hub")
    body = page(hub, f"/workers/{worker['name']}")
    assert '<table id="worker" class="departed"' in body
    assert re.search(r"left \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: shut down", body), body
    assert "scikit-learn" in listed_packages(body)


def predict_with_stored_inputs(client: HubClient, fitted: tuple) -> tuple[list[Stored], Any]:
    """Predict with the model and data `fitted`, put first: the inputs as the client sent them
    (address, size), and the predictions."""
    model, data = fitted
    stored = [client.put(model), client.put(data)]
    return stored, client.predict(stored[0], stored[1])


def cache_rows(body: str) -> dict[str, tuple[int, str]]:
    """The inputs the page lists in the worker's cache: short address -> (bytes, last used)."""
    found = re.search(r'<table id="cache-largest">(.*?)</table>', body, re.DOTALL)
    assert found is not None, body
    return {
        prefix: (int(size), used)
        for prefix, size, used in re.findall(
            r'<td><code>(\w+)</code></td>\s*<td data-bytes="(\d+)">[^<]*</td>\s*<td>([^<]*)</td>',
            found.group(1),
        )
    }


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_workers_page_lists_what_its_cache_holds_after_a_predict(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    stored, _ = predict_with_stored_inputs(client, breast_cancer)
    (worker,) = client.workers()
    path = f"/workers/{worker['name']}"

    def listed() -> dict[str, tuple[int, str]]:
        return cache_rows(page(hub, path))

    wait_until(lambda: len(listed()) == 2, 10.0, "the model and the data in the worker's cache")
    rows = listed()
    for input_ in stored:
        size, used = rows[input_.address[:12]]
        assert size == input_.size
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", used), used
    body = page(hub, path)
    total = sum(input_.size for input_ in stored)
    assert re.search(rf'2 inputs, <span data-bytes="{total}">', body), body


def test_a_cache_report_far_bigger_than_a_real_one_ends_the_session(hub: Hub) -> None:
    listed = [worker_pb2.CachedInput(blake3="ab" * 32, size=1)] * 1000
    report = worker_pb2.CacheReport(entries=1000, largest=listed)
    with ScriptedRogue(hub, lambda job_id: []) as rogue:
        rogue.send(worker_pb2.WorkerMessage(cache=report))
        assert "a cache report of" in refusal_of(rogue).message


def ended_per_minute(body: str) -> int:
    """How many jobs the page's "ended" series counts, over its minutes."""
    group = re.search(r'<g class="series ended".*?</g>', body, re.DOTALL)
    assert group is not None, body
    titles = re.findall(r"<circle [^>]*><title>ended \d\d:\d\d:\d\d: (\d+) jobs</title>", group[0])
    return sum(int(count) for count in titles)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_each_workers_page_charts_its_own_jobs(
    hub: Hub, client: HubClient, start_worker: Callable[..., WorkerProcess], iris: tuple
) -> None:
    model, data = iris
    address = ("-h", "127.0.0.1", "-p", str(hub.port))
    for name in ("one", "two"):
        start_worker(*address, "--name", name).wait_for_output(CONNECTED)
    ran = {"one": 1, "two": 3}
    for name, count in ran.items():
        for _ in range(count):
            client.predict(model, data, worker=name)
    for name, count in ran.items():
        body = page(hub, f"/workers/{name}")
        assert ended_per_minute(body) == count, name
        assert '<g class="series p50"' in body and '<g class="series p95"' in body


def ended_on(kept: history.History, worker_id: str = "") -> int:
    return sum(minute.ended for minute in kept.per_minute(worker_id))


def test_the_history_counts_each_workers_ends_and_jobs_never_sent() -> None:
    kept = history.History(lambda: 0)
    now = time.time()
    for worker_id in ("a", "b", "a", "c", ""):  # "": never sent
        kept.job_ended(SimpleNamespace(worker_id=worker_id, submitted_at=now - 1), None, now)
    assert {w: ended_on(kept, w) for w in ("a", "b", "c", "nobody")} == {
        "a": 2,
        "b": 1,
        "c": 1,
        "nobody": 0,
    }
    assert ended_on(kept) == 5


def test_the_history_keeps_one_bounded_store_however_many_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "ENDS_KEPT", 10)
    kept = history.History(lambda: 0)
    now = time.time()
    workers = [f"worker-{n:04d}" for n in range(1000)]
    for worker_id in workers:
        kept.job_ended(SimpleNamespace(worker_id=worker_id, submitted_at=now - 1), None, now)
    assert ended_on(kept) == 10
    # The latest ends, each on its own worker: no more than the hub keeps in all.
    assert sum(ended_on(kept, worker_id) for worker_id in workers) == 10
    assert [ended_on(kept, worker_id) for worker_id in workers[-10:]] == [1] * 10


def bytes_moved(hub: Hub) -> dict[str, float]:
    return {
        dict(labels)["direction"]: value
        for (name, labels), value in metrics(hub, hub.admin_key).items()
        if name == "giskard_hub_bytes_moved_total"
    }


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_metrics_count_the_bytes_moved_each_way_exactly(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess, breast_cancer: tuple
) -> None:
    stored, predictions = predict_with_stored_inputs(client, breast_cancer)
    inputs = sum(input_.size for input_ in stored)  # uploaded, or inline in the job
    assert any(input_.ref.inline for input_ in stored)  # the model: small enough
    assert not all(input_.ref.inline for input_ in stored)  # the data: uploaded
    # The worker had neither: each went to it once; the result came back once.
    assert bytes_moved(hub) == {
        "upload": inputs,
        "to_worker": inputs,
        "result": len(codec.encode_to_bytes(predictions)),
    }


def job_received(rogue: ScriptedRogue) -> str:
    """The id of the next job the rogue worker receives."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = rogue.received.get(timeout=30)
        if message.WhichOneof("kind") == "job":
            return message.job.job_id
    raise AssertionError("no job came")


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_result_bytes_a_job_no_longer_takes_are_not_counted(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job must still hold its slot when its late result comes, however slow the machine:
    # once the hub gives up on its worker's confirmation, that result would be ignored anyway.
    monkeypatch.setattr(giskard.hub.jobs, "STOP_GRACE_S", 120.0)
    with ScriptedRogue(hub, lambda job_id: []) as rogue, HubClient(hub.address) as reader:
        with HubClient(hub.address) as leaving:
            leaving.submit(remote_models.print_lines, "late", 1)
            job_id = job_received(rogue)
        # Its client left: the job ended, and waits for its worker to stop it.
        wait_until(lambda: reader.status()["recent"], 30, "the job to end without its client")
        late = b"a result nobody takes any more"
        result = common_pb2.ArtifactRef(blake3=digest_of([late])[0], size=len(late), inline=late)
        end = common_pb2.JobEnd(job_id=job_id, success=common_pb2.JobSuccess(result=result))
        rogue.send(worker_pb2.WorkerMessage(end=end))
        wait_until(lambda: not reader.workers()[0]["running"], 30, "the worker to end the job")
    assert bytes_moved(hub)["result"] == 0


def test_a_job_its_worker_never_read_counts_its_inline_inputs_once_when_sent_again() -> None:
    inline = b"x" * 1000
    ref = common_pb2.ArtifactRef(blake3=digest_of([inline])[0], size=len(inline), inline=inline)
    spec = common_pb2.JobSpec(call=common_pb2.CallJob(function=ref))

    async def scenario() -> dict[str, int]:
        registry = WorkerRegistry()
        board = JobBoard(registry, ArtifactStore())
        first = WorkerSession(info=common_pb2.WorkerInfo(worker_id="w1", name="one"), peer="p")
        registry.add(first)
        job = Job("job-0001", spec, JobEvents(UnreadResults()))
        board.submit(job)  # sent: its message waits in the outbox
        board.detach(first, "the connection dropped")  # never read: the job is queued again
        registry.remove(first)
        second = WorkerSession(info=common_pb2.WorkerInfo(worker_id="w2", name="two"), peer="p")
        registry.add(second)  # sent again, to a worker that reads it
        assert job.session is second and second.outbox.qsize() == 1
        return dict(board.bytes_moved)

    moved = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert moved == {"upload": len(inline), "to_worker": len(inline)}


class OneJobHub(worker_pb2_grpc.WorkerHubServicer):
    """A hub that welcomes a worker (taking cache reports or not, as an older hub), sends it
    an info job and records the kinds of message it gets until that job's end."""

    def __init__(self, accepts_cache_reports: bool) -> None:
        self.accepts_cache_reports = accepts_cache_reports
        self.kinds: queue.Queue[list[str]] = queue.Queue()

    def Connect(
        self, request_iterator: Iterator[worker_pb2.WorkerMessage], context: grpc.ServicerContext
    ) -> Iterator[worker_pb2.HubMessage]:
        next(request_iterator)  # the hello
        welcome = worker_pb2.Welcome(
            protocol_version=PROTOCOL_VERSION,
            active=True,
            accepts_cache_reports=self.accepts_cache_reports,
        )
        yield worker_pb2.HubMessage(welcome=welcome)
        info = common_pb2.JobSpec(info=common_pb2.InfoJob())
        yield worker_pb2.HubMessage(job=worker_pb2.Job(job_id="info", spec=info))
        kinds = []
        for message in request_iterator:
            kinds.append(message.WhichOneof("kind"))
            if kinds[-1] == "end":
                break
        self.kinds.put(kinds)


@pytest.mark.parametrize("accepts", [True, False])
def test_a_worker_reports_its_cache_only_to_a_hub_that_takes_the_reports(
    start_worker: Callable[..., WorkerProcess], accepts: bool
) -> None:
    hub = OneJobHub(accepts)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    worker_pb2_grpc.add_WorkerHubServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        start_worker("-h", "127.0.0.1", "-p", str(port))
        kinds = hub.kinds.get(timeout=30)
    finally:
        server.stop(0)
    # The first report goes as the session starts, long before the info job can end.
    assert ("cache" in kinds) is accepts, kinds
