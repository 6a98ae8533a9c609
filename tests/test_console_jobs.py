"""The console's job pages over real HTTP, on a real hub with a real worker: a job's own page
with its error, traceback and logs; the queued jobs, and an admin cancelling one of them;
the 404 page of what does not exist; the bounds of the ended jobs' details the console keeps."""

from __future__ import annotations

import html
import re
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess, wait_until
from console_http import Reply, act, csrf_token, job_path, log_in, request

from giskard.client import HubClient
from giskard.credentials import hub_dir
from giskard.errors import JobCancelledError, JobError
from giskard.hub import Hub
from giskard.hub.console import job_details, job_pages
from giskard.hub.console.job_details import JobDetails
from giskard.hub.job import Job
from giskard.hub.job_events import JobEvents, UnreadResults
from giskard.hub.keys import KeyStore
from giskard.hub.registry import WorkerRegistry
from giskard.job_handle import JobHandle
from giskard.rpc.v1 import client_pb2, client_pb2_grpc, common_pb2
from giskard.worker.jobs import CUT_MARK, FAILURE_TYPE_MAX_CHARS

CONSOLE = {"console_port": 0}
WAIT_S = 30


def failed_job_page(hub: Hub, client: HubClient, key: str) -> tuple[str, str, str]:
    """A job that printed, logged, then raised: its client's id, a console session of `key`
    and the path of the job's page."""
    handle = client.submit(remote_models.fail_loudly)
    with pytest.raises(JobError):
        handle.result(timeout=WAIT_S)
    session = log_in(hub.console_port, key)
    return handle.job_id, session, job_path(hub.console_port, session, handle.job_id)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_failed_job_s_page_shows_its_error_traceback_and_logs(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    job_id, session, path = failed_job_page(hub, client, hub.admin_key)
    assert job_id not in path  # the console's own id: a client's is unique per key only
    page = request(hub.console_port, path, headers={"Cookie": session})
    assert page.status == 200
    shown = html.unescape(page.body)
    assert "ValueError: cannot go on with 'these' weights" in shown
    assert "model_error" in shown
    assert re.search(r'File ".*", line \d+, in fail_loudly\n', shown)  # its traceback
    assert "loading the <model> & its weights" in shown
    assert "<model>" not in page.body  # escaped
    assert "the weights look odd" in shown
    assert hub.admin_key not in page.body


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_client_key_reads_a_job_s_page(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    _, key = KeyStore(hub_dir() / "keys.json").create("client")
    _, session, path = failed_job_page(hub, client, key)
    page = request(hub.console_port, path, headers={"Cookie": session})
    assert page.status == 200 and "the weights look odd" in page.body
    assert key not in page.body


def job_row(page: str, table: str, job_id: str) -> str:
    """The row of the job its client knows as `job_id` in that table ("queued", "running") of
    the /jobs page."""
    row = re.search(rf'<tr class="{table}" data-job-id="{job_id}">.*?</tr>', page, re.S)
    assert row is not None, page
    return row.group(0)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_an_admin_cancels_the_queued_job_and_the_running_one_goes_on(
    hub: Hub,
    client: HubClient,
    start_worker: Callable[..., WorkerProcess],
    iris: tuple,
    tmp_path: Path,
) -> None:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--concurrency", "1")
    worker.wait_for_output(CONNECTED)
    model, data = iris
    marker, release = tmp_path / "started", tmp_path / "release"
    running = client.submit_predict(remote_models.HeldModel(marker, release), data)
    try:
        wait_until(marker.exists, WAIT_S, "the held job to start")
        # The worker holds one job ready beside its running one (its prefetch): the third queues.
        ready = client.submit_predict(model, data)
        queued = client.submit_predict(model, data)
        wait_until(lambda: client.status()["queued"] == 1, WAIT_S, "the third job to queue")
        session = log_in(hub.console_port, hub.admin_key)
        page = request(hub.console_port, "/jobs", headers={"Cookie": session}).body
        assert "a slot in its worker" in job_row(page, "running", ready.job_id)
        row = job_row(page, "queued", queued.job_id)
        assert "a worker slot" in row and "predict" in row
        path = job_path(hub.console_port, session, queued.job_id)
        own_page = request(hub.console_port, path, headers={"Cookie": session}).body
        assert '<td class="state">queued</td>' in own_page
        assert f'action="{path}/cancel"' in own_page
        reply = act(
            hub.console_port, path + "/cancel", session, csrf_token(hub.console_port, session)
        )
        assert (reply.status, reply.headers["location"]) == (303, "/jobs")
        with pytest.raises(JobCancelledError):
            queued.result(timeout=WAIT_S)
        release.touch()  # the running job held its slot until now, whatever the steps took
        np.testing.assert_array_equal(running.result(timeout=WAIT_S), np.arange(len(data)))
        np.testing.assert_array_equal(ready.result(timeout=WAIT_S), model.predict(data))
    finally:
        release.touch()  # also when a step above failed: the job ends with the test


def waiting_job(stub: client_pb2_grpc.PlatformStub, key: str, job_id: str) -> Iterator:
    """An info job of this id sent with `key` straight over gRPC (HubClient chooses its own
    ids), waiting for a worker to connect: its events, the last its end."""
    request = client_pb2.RunJobRequest(
        spec=common_pb2.JobSpec(info=common_pb2.InfoJob()), job_id=job_id, wait_for_worker_s=600
    )
    return stub.RunJob(request, metadata=(("authorization", f"Bearer {key}"),), timeout=WAIT_S)


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_cancel_ends_one_job_where_two_keys_chose_the_same_id(
    hub: Hub, client: HubClient
) -> None:
    _, other_key = KeyStore(hub_dir() / "keys.json").create("client")
    with grpc.insecure_channel(hub.address) as channel:
        stub = client_pb2_grpc.PlatformStub(channel)
        calls = [waiting_job(stub, key, "same-id-0001") for key in (hub.admin_key, other_key)]
        wait_until(lambda: client.status()["waiting_for_worker"] == 2, WAIT_S, "both to wait")
        session = log_in(hub.console_port, hub.admin_key)
        csrf = csrf_token(hub.console_port, session)
        page = request(hub.console_port, "/jobs", headers={"Cookie": session}).body
        paths = re.findall(r'data-job-id="same-id-0001">.*?href="(/jobs/[^"]+)"', page, re.S)
        assert len(set(paths)) == 2, page
        assert act(hub.console_port, paths[0] + "/cancel", session, csrf).status == 303
        wait_until(lambda: client.status()["waiting_for_worker"] == 1, WAIT_S, "one to end")
        assert act(hub.console_port, paths[1] + "/cancel", session, csrf).status == 303
        for call in calls:
            (end,) = [event.end for event in call if event.WhichOneof("kind") == "end"]
            assert end.reason == common_pb2.END_REASON_CANCELLED


def assert_not_found(reply: Reply, what: str) -> None:
    assert reply.status == 404, reply.body
    assert reply.headers["content-type"].startswith("text/html")
    assert f'<p id="not-found">{what}</p>' in reply.body
    assert "Traceback" not in reply.body


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_what_does_not_exist_is_a_404_page_and_no_traceback(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    port = hub.console_port
    session = log_in(port, hub.admin_key)
    csrf = csrf_token(port, session)
    read = {"Cookie": session}
    assert_not_found(request(port, "/no/such/page", headers=read), "no such page")
    assert_not_found(request(port, "/jobs/no-such-job", headers=read), "no such job")
    assert_not_found(act(port, "/jobs/no-such-job/cancel", session, csrf), "no such job")
    assert_not_found(act(port, "/workers/nobody/drain", session, csrf), "no such worker")
    (worker,) = client.workers()
    path = f"/workers/{worker['worker_id']}/explode"
    assert_not_found(act(port, path, session, csrf), "no such page")


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_reader_not_logged_in_is_sent_to_log_in_even_for_a_job_that_does_not_exist(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    _, _, path = failed_job_page(hub, client, hub.admin_key)
    for page in (path, "/jobs/no-such-job"):
        reply = request(hub.console_port, page)
        assert (reply.status, reply.headers["location"]) == (303, "/login"), page


def jobs_waiting(client: HubClient, iris: tuple, count: int) -> list[JobHandle]:
    """`count` jobs waiting for a worker to connect (none does)."""
    model, data = iris
    handles = [client.submit_predict(model, data, wait_for_worker_s=600) for _ in range(count)]
    wait_until(lambda: client.status()["waiting_for_worker"] == count, WAIT_S, "jobs to wait")
    return handles


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_long_queue_lists_its_first_jobs_and_counts_the_others(
    hub: Hub, client: HubClient, iris: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_pages, "LISTED_MAX", 2)  # the hub runs in this process
    handles = jobs_waiting(client, iris, 3)
    session = log_in(hub.console_port, hub.admin_key)
    page = request(hub.console_port, "/jobs", headers={"Cookie": session}).body
    assert [job_row(page, "queued", handle.job_id) for handle in handles[:2]]
    assert f'data-job-id="{handles[2].job_id}"' not in page
    assert "and 1 more queued behind these." in page


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_client_session_sees_the_queue_without_cancel_buttons_and_cannot_cancel(
    hub: Hub, client: HubClient, iris: tuple
) -> None:
    (handle,) = jobs_waiting(client, iris, 1)
    _, key = KeyStore(hub_dir() / "keys.json").create("client")
    session = log_in(hub.console_port, key)
    page = request(hub.console_port, "/jobs", headers={"Cookie": session}).body
    assert "/cancel" not in job_row(page, "queued", handle.job_id)
    path = job_path(hub.console_port, session, handle.job_id)
    forged = act(hub.console_port, path + "/cancel", session, csrf_token(hub.console_port, session))
    assert forged.status == 403
    assert client.status()["waiting_for_worker"] == 1


def ended_with_logs(details: JobDetails, job_id: str, logs: bytes) -> None:
    job = Job(job_id, common_pb2.JobSpec(call={}), JobEvents(UnreadResults()))
    end = common_pb2.JobEnd(job_id=job_id, reason=common_pb2.END_REASON_SUCCEEDED, logs=logs)
    details.job_ended(job, end, time.time())


def test_the_details_kept_are_the_latest_within_their_count_and_bytes() -> None:
    details = JobDetails(WorkerRegistry())
    for n in range(job_details.ENDED_KEPT + 1):
        ended_with_logs(details, f"job-{n:04d}", b"")
    kept = [ended.job_id for ended in details.ended]
    assert kept == [f"job-{n:04d}" for n in range(1, job_details.ENDED_KEPT + 1)]
    big = b"x" * (job_details.LOGS_KEPT_BYTES + 1)  # more than the console keeps of one job
    for n in range(job_details.ENDED_MAX_BYTES // job_details.LOGS_KEPT_BYTES + 1):
        ended_with_logs(details, f"big-{n:04d}", big)
    assert sum(ended.size_bytes for ended in details.ended) <= job_details.ENDED_MAX_BYTES
    latest = details.ended[-1]
    assert (len(latest.logs), latest.cut) == (job_details.LOGS_KEPT_BYTES, ("logs",))
    assert details.ended_job(latest.page_id) == latest


# Well past what the console keeps.
LONG_TYPE_CHARS = 200 * 1024


@pytest.mark.parametrize("hub", [CONSOLE], indirect=True)
def test_a_failure_s_huge_type_name_reaches_the_page_and_the_client_cut(
    hub: Hub, client: HubClient, connected_worker: WorkerProcess
) -> None:
    # The worker cuts it (worker.jobs); what the hub keeps of another worker's word is cut
    # again by the console (test_the_details_kept_stay_within_their_bytes_whatever_a_worker_sends).
    handle = client.submit(remote_models.raise_with_a_long_type_name, LONG_TYPE_CHARS)
    with pytest.raises(JobError) as raised:
        handle.result(timeout=WAIT_S)
    assert raised.value.remote_type.endswith(CUT_MARK)
    assert len(raised.value.remote_type) == FAILURE_TYPE_MAX_CHARS
    session = log_in(hub.console_port, hub.admin_key)
    page = request(
        hub.console_port,
        job_path(hub.console_port, session, handle.job_id),
        headers={"Cookie": session},
    ).body
    error = re.search(r'<p class="error" id="error">(.*?)</p>', page, re.S)
    assert error is not None, page[:2000]
    shown_type = html.unescape(error.group(1)).split(": ", 1)[0]
    assert shown_type == raised.value.remote_type
    assert "its type name is longer than any real one" in error.group(1)
    (recent,) = client.status()["recent"]
    assert recent["detail"] == raised.value.remote_type


def huge_failure(details: JobDetails, job_id: str, chars: int) -> None:
    """A job that failed with a type name, a message and a traceback of `chars` characters."""
    job = Job(job_id, common_pb2.JobSpec(call={}), JobEvents(UnreadResults()))
    failure = common_pb2.JobFailure(type="T" * chars, message="m" * chars, traceback="t" * chars)
    end = common_pb2.JobEnd(job_id=job_id, reason=common_pb2.END_REASON_MODEL_ERROR)
    end.failure.CopyFrom(failure)
    details.job_ended(job, end, time.time())


def test_the_details_kept_stay_within_their_bytes_whatever_a_worker_sends() -> None:
    details = JobDetails(WorkerRegistry())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(job_details.ENDED_KEPT):
            huge_failure(details, f"job-{n:04d}", 512 * 1024)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= job_details.ENDED_MAX_BYTES
    assert sum(ended.size_bytes for ended in details.ended) <= job_details.ENDED_MAX_BYTES
    latest = details.ended[-1]
    assert len(latest.error_type) == job_details.FAILURE_TYPE_KEPT_CHARS
    assert set(latest.cut) == {"error type", "error message", "traceback"}
