"""What a job did not use costs it nothing: a predict that changed no directory, environment
or umask and started no process leaves its executor nothing to restore or walk."""

from __future__ import annotations

from conftest import WorkerProcess

from giskard.client import HubClient

# What restoring a process's state or walking its processes does, as Python audits it.
RESTORING = {"os.chdir", "os.putenv", "os.unsetenv", "os.listdir", "os.scandir", "open"}


def test_a_job_that_changed_nothing_leaves_nothing_to_restore(
    client: HubClient, connected_worker: WorkerProcess, iris: tuple[object, object]
) -> None:
    def watch(watched: set[str]) -> None:
        import sys
        import types

        # A module, so that the next jobs in this warm executor find what it records.
        record = types.ModuleType("audited_by_test")
        record.events = []
        sys.modules[record.__name__] = record
        sys.addaudithook(
            lambda event, args: record.events.append(event) if event in watched else None
        )

    def recorded() -> list[str]:
        import sys

        events = sys.modules["audited_by_test"].events
        taken = list(events)
        events.clear()
        return taken

    model, data = iris
    stored, row = client.put(model), data.iloc[:1]
    client.predict(stored, row)  # the model is loaded and cached once, before the watch
    client.call(watch, RESTORING)
    client.call(recorded)
    for _ in range(3):
        client.predict(stored, row)
    assert client.call(recorded) == []
