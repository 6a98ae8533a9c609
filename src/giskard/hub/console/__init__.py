"""The hub's admin console: read-only web pages, login, /metrics and /healthz.

An optional part of the hub (`pip install 'giskard-worker[hub]'`): nothing here is imported
unless a hub serves its console, and workers never import it.
"""

from __future__ import annotations

import importlib.util

DEFAULT_CONSOLE_PORT = 40052
REQUIRES = ("starlette", "uvicorn", "prometheus_client")


def is_available() -> bool:
    """Whether the packages the console needs are installed."""
    return all(importlib.util.find_spec(name) is not None for name in REQUIRES)
