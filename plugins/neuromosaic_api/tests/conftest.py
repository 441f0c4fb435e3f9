"""Fixtures: an app over an in-memory results database with one small experiment, tokens of every
kind, and a real server on a free loopback port; and what an isolated session leaves out.

``test_searches.py`` and ``test_dashboard.py`` start real searches (``neuromosaic`` with the digits
task), and ``test_client_policy_http.py`` has a real server compose them, which needs a strategy,
encoder, storage, task, runner and code generator plugin;
``test_container.py`` needs the sql storage plugin. ``nox -s plugin`` installs this plugin alone
with the core, where a skip would fail under CI's strict mode, so there those modules are not
collected, and the session header says why. With everything installed (the README's ``pytest``)
they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neuromosaic_api.testing import api_settings, fill

from neuromosaic_core.testing.memory import InMemoryResultsDB
from neuromosaic_core.testing.plugins import missing_components

SEARCH_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "sql": "storage", "digits": "task",
                "template": "codegen", "local": "runner"}


MISSING_FOR_SEARCH = missing_components(SEARCH_NEEDS)
MISSING_SQL = missing_components({"sql": "storage"})
collect_ignore: list[str] = []
if MISSING_FOR_SEARCH:
    collect_ignore += ["test_searches.py", "test_dashboard.py", "test_client_policy_http.py"]
if MISSING_SQL:
    collect_ignore += ["test_container.py"]


def pytest_report_header() -> list[str]:
    if not collect_ignore:
        return []
    return [f"neuromosaic-api: {', '.join(collect_ignore)} not collected "
            f"({', '.join(sorted(set(MISSING_FOR_SEARCH + MISSING_SQL)))} not installed)"]


@pytest.fixture
def db() -> InMemoryResultsDB:
    memory = InMemoryResultsDB()
    fill(memory)
    return memory


@pytest.fixture
def make_client(tmp_path: Path, db: InMemoryResultsDB) -> Iterator[Any]:
    """``make_client(**settings)``: a TestClient (lifespan entered) over ``db``."""
    from fastapi.testclient import TestClient
    from neuromosaic_api.app import create_app

    clients: list[Any] = []

    def make(database: Any = None, **changes: Any) -> Any:
        client = TestClient(create_app(api_settings(tmp_path, **changes), db=database or db), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client()


