"""A real worker process with settings the CLI does not expose (short graces), for tests:
`python worker_main.py PORT --drain-grace S --reattach-grace S [--name N]`; it takes its key
from $GISKARD_API_KEY and logs to stderr as `giskard worker start` does."""

from __future__ import annotations

import argparse
import os

from giskard.address import HubAddress
from giskard.credentials import Credentials
from giskard.logs import configure_logging
from giskard.worker import Worker
from giskard.worker.config import WorkerConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--drain-grace", type=float, default=20.0)
    parser.add_argument("--reattach-grace", type=float, default=30.0)
    parser.add_argument("--name", default="test-worker")
    args = parser.parse_args()
    configure_logging()
    config = WorkerConfig(
        address=HubAddress("127.0.0.1", args.port),
        credentials=Credentials(os.environ["GISKARD_API_KEY"], "$GISKARD_API_KEY"),
        drain_grace_s=args.drain_grace,
        reattach_grace_s=args.reattach_grace,
        name=args.name,
    )
    Worker(config).run()


if __name__ == "__main__":
    main()
