"""The whole loop on one machine: a hub, a worker, a real model, predictions that agree.

Run with `make demo` (or `python examples/quickstart.py` inside the project's venv).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from giskard.client import HubClient
from giskard.hub import Hub


def main() -> int:
    data = load_breast_cancer(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.data, data.target)

    # Its console too, where its packages are installed (`giskard-worker[hub]`).
    with Hub(port=0, console_port=0) as hub:
        print(f"1. hub listening on {hub.address}")
        if hub.console_port is not None:
            print(
                f"   console on http://{hub.host}:{hub.console_port}"
                f" (log in: giskard hub console -p {hub.console_port})"
            )
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "giskard.cli",
                "worker",
                "start",
                "-h",
                hub.host,
                "-p",
                str(hub.port),
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            with HubClient(hub.address) as client:
                return _use(client, worker, model, data.data)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
            print("5. worker and hub stopped")


def _use(client: HubClient, worker: subprocess.Popen, model: object, features: object) -> int:
    began = time.monotonic()
    predictions = client.predict(model, features, wait_for_worker_s=30)
    elapsed_s = time.monotonic() - began
    print(f"2. worker pid {worker.pid} connected; first prediction after {elapsed_s:.2f} s")

    (info,) = client.workers()
    print(
        f"3. worker info: Python {info['python_version']} at {info['interpreter']}, "
        f"pid {info['pid']} on {info['hostname']}, {info['platform']}, "
        f"{len(info['packages'])} packages (scikit-learn {info['packages'].get('scikit-learn')})"
    )

    local = model.predict(features)
    probabilities = client.predict(model, features, method="predict_proba")
    agree = np.array_equal(predictions, local) and np.array_equal(
        probabilities, model.predict_proba(features)
    )
    print(
        f"4. {len(predictions)} remote predictions on breast_cancer, first ten {predictions[:10]}; "
        f"{'they equal' if agree else 'they DIFFER from'} the local ones"
    )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
