"""Searches through the API for real: validated as the CLI validates, run as ``neuromosaic``
subprocesses writing to the API's database, stopped (trials interrupted) and resumed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from neuromosaic_api.testing import WRITE, api_settings

#: A search of a few seconds a trial: digits, one epoch, one worker, no plots.
FAST = ["task=digits", "training.epochs=1", "training.patience=1", "runner.workers=1", "visualizers=[]"]
NAME = "digits-mlp_conv1d-random"


@pytest.fixture
def sql_client(tmp_path) -> Any:
    from fastapi.testclient import TestClient
    from neuromosaic_api.app import create_app

    with TestClient(create_app(api_settings(tmp_path, rate=0, stop_grace_seconds=60)), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("overrides", "index", "message"), [
    (["task=digits", "search.trials=abc"], None, "search.trials: expected an integer, got 'abc'"),
    (["task=nope"], None, "task='nope' is not an installed task; valid choices:"),
    (["task=digits", "search.trails=3"], 1, "'search.trails' is not a setting clients may set on this server (under "
                                            "'search' they may set: direction, max_failures, metric, reuse,"),
    (["experiment.name=../../etc"], 0, "experiment.name='../../etc': a path or a URL cannot be given through the API"),
    (["experiment.name='a b'"], None, "experiment.name='a b': use letters, digits"),
])
def test_create_refuses_what_the_cli_refuses_with_its_message(sql_client, overrides, index, message):
    response = sql_client.post("/api/experiments", headers=WRITE, json={"overrides": overrides})
    assert response.status_code == 422, response.text
    where = "body.overrides" + ("" if index is None else f".{index}")
    assert response.json()["message"].startswith(f"{where}: ")
    assert message in response.json()["message"]


def _wait(client: Any, until: Any, what: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/api/experiments/{NAME}", headers=WRITE).json()
        if until(info):
            return info
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; last state: {info}")


def test_create_start_stop_and_resume_a_real_search(sql_client, tmp_path):
    created = sql_client.post("/api/experiments", headers=WRITE, json={"overrides": [*FAST, "search.trials=50"]})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == NAME and created.json()["search"]["state"] == "created"
    assert sql_client.post(f"/api/experiments/{NAME}/start", headers=WRITE).status_code == 202
    assert sql_client.post(f"/api/experiments/{NAME}/start", headers=WRITE).status_code == 409  # already running
    info = _wait(sql_client, lambda i: i["completed"] >= 2, "two completed trials")
    assert info["search"]["state"] == "running"

    assert sql_client.post(f"/api/experiments/{NAME}/stop", headers=WRITE).status_code == 202
    info = _wait(sql_client, lambda i: i["search"]["state"] == "stopped", "the search to stop")
    page = sql_client.get(f"/api/experiments/{NAME}/trials?limit=500", headers=WRITE).json()
    statuses = {t["status"] for t in page["items"]}
    assert statuses <= {"completed", "failed", "invalid", "interrupted"}, statuses  # nothing left running
    assert (tmp_path / "runs" / NAME / "api-search.log").is_file()
    stopped_at = info["completed"]

    assert sql_client.post(f"/api/experiments/{NAME}/start", headers=WRITE).status_code == 202
    info = _wait(sql_client, lambda i: i["completed"] > stopped_at, "the resumed search to complete a trial")
    numbers = [t["number"] for t in sql_client.get(f"/api/experiments/{NAME}/trials?limit=500", headers=WRITE).json()["items"]]
    assert len(numbers) == len(set(numbers))  # resumed in place: no trial number stored twice
    assert sql_client.post(f"/api/experiments/{NAME}/stop", headers=WRITE).status_code == 202
    _wait(sql_client, lambda i: i["search"]["state"] == "stopped", "the search to stop")
