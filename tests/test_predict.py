"""Predictions through a real hub and a real worker process equal the in-process ones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import remote_models
from conftest import CONNECTED, WorkerProcess

from giskard.client import HubClient
from giskard.errors import EndReason, JobError
from giskard.hub import Hub
from giskard.worker.jobs import (
    CUT_MARK,
    FAILURE_MESSAGE_MAX_CHARS,
    FAILURE_TRACEBACK_MAX_CHARS,
)

pytestmark = pytest.mark.usefixtures("connected_worker")


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("dataset", ["iris", "breast_cancer"])
def test_pipeline_predictions_equal_local_ones(
    client: HubClient, request: pytest.FixtureRequest, dataset: str, method: str
) -> None:
    model, data = request.getfixturevalue(dataset)
    remote = client.predict(model, data, method=method)
    local = getattr(model, method)(data)
    assert remote.dtype == local.dtype
    np.testing.assert_array_equal(remote, local)


def test_string_labels_come_back_as_strings(client: HubClient, iris: tuple) -> None:
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    frame = load_iris(as_frame=True)
    names = np.asarray(load_iris().target_names)[frame.target]
    model = DecisionTreeClassifier(random_state=0).fit(frame.data, names)
    remote = client.predict(model, frame.data)
    np.testing.assert_array_equal(remote, model.predict(frame.data))
    assert set(remote) == {"setosa", "versicolor", "virginica"}


def test_a_model_returning_a_dataframe(client: HubClient, iris: tuple) -> None:
    _, data = iris
    model = remote_models.FrameModel()
    pd.testing.assert_frame_equal(client.predict(model, data), model.predict(data))


def test_one_million_rows(client: HubClient, breast_cancer: tuple) -> None:
    model, data = breast_cancer
    rng = np.random.default_rng(0)
    rows = data.sample(n=1_000_000, replace=True, random_state=0).reset_index(drop=True)
    rows += rng.normal(scale=0.01, size=rows.shape)
    np.testing.assert_array_equal(client.predict(model, rows), model.predict(rows))
    remote = client.predict(model, rows, method="predict_proba")
    np.testing.assert_array_equal(remote, model.predict_proba(rows))


def test_a_failing_model_fails_its_job_only(
    client: HubClient, iris: tuple, connected_worker: WorkerProcess
) -> None:
    model, data = iris
    with pytest.raises(JobError) as failure:
        client.predict(remote_models.FailingModel(), data)
    assert failure.value.remote_type == "ValueError"
    assert failure.value.remote_message == "cannot predict on 150 rows"
    assert "in predict" in failure.value.remote_traceback
    # The worker is still connected and serves the next job.
    np.testing.assert_array_equal(client.predict(model, data), model.predict(data))
    assert connected_worker.process.poll() is None


def test_an_exception_of_any_size_fails_its_job_as_a_model_error_cut_to_its_limits(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    # 400,000 control characters: 2.4 MB once JSON-escaped on the executor's pipe.
    with pytest.raises(JobError) as failure:
        client.submit(remote_models.raise_a_huge_message, 400_000).result(timeout=60)
    assert failure.value.reason is EndReason.MODEL_ERROR, failure.value
    assert failure.value.remote_type == "ValueError"
    message = failure.value.remote_message
    assert message.startswith("the start of a huge message")
    assert len(message) == FAILURE_MESSAGE_MAX_CHARS and message.endswith(CUT_MARK)
    trace = failure.value.remote_traceback
    assert "raise_a_huge_message" in trace  # the frames survive the message's cut
    assert len(trace) <= FAILURE_TRACEBACK_MAX_CHARS + len(CUT_MARK)
    assert connected_worker.process.poll() is None


def test_an_exception_whose_str_raises_fails_its_job_as_a_model_error(
    client: HubClient, connected_worker: WorkerProcess
) -> None:
    with pytest.raises(JobError) as failure:
        client.submit(remote_models.raise_unprintable).result(timeout=60)
    assert failure.value.reason is EndReason.MODEL_ERROR, failure.value
    assert failure.value.remote_message == "<str() of the _Unprintable raised RuntimeError>"


def test_a_memory_error_of_any_size_ends_its_job_as_a_memory_limit(
    hub: Hub, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("-h", "127.0.0.1", "-p", str(hub.port), "--max-job-memory", "2G")
    worker.wait_for_output(CONNECTED)
    with HubClient(hub.address) as client, pytest.raises(JobError) as failure:
        job = client.submit(remote_models.run_out_of_memory_with_a_huge_message, 100_000)
        job.result(timeout=60)
    assert failure.value.reason is EndReason.MEMORY_LIMIT, failure.value
    assert len(failure.value.remote_message) == FAILURE_MESSAGE_MAX_CHARS
    assert worker.process.poll() is None


def test_unknown_method_fails_clearly(client: HubClient, iris: tuple) -> None:
    model, data = iris
    with pytest.raises(JobError, match="no method 'transmogrify'"):
        client.predict(model, data, method="transmogrify")


def test_a_result_that_is_not_data_fails_the_job(client: HubClient, iris: tuple) -> None:
    _, data = iris
    with pytest.raises(JobError, match="cannot be sent"):
        client.predict(remote_models.UnsendableResultModel(), data)


def test_the_same_model_is_deserialised_once(
    client: HubClient, iris: tuple, connected_worker: WorkerProcess
) -> None:
    model, data = iris
    for _ in range(3):
        client.predict(model, data)
    # Only the first job sends the model and the data; the others find them in the cache.
    assert connected_worker.output.count("2 of 2 input(s) cached, 0 B sent") == 2
