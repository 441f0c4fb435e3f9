"""The OpenAPI document: the committed copy matches what the server serves, and fuzzing every
operation in it (schemathesis, a valid write token) never gets a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from neuromosaic_api.testing import READ, WRITE

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"
REFRESH = "neuromosaic-api openapi -o plugins/neuromosaic_api/openapi.json"

schema = schemathesis.openapi.from_path(str(COMMITTED))


def test_the_served_document_is_the_committed_one(client):
    served = client.get("/openapi.json", headers=READ)
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text()), f"the API changed; refresh the document: {REFRESH}"
    assert served.json()["openapi"].startswith("3.")


def test_the_document_needs_a_token(client):
    assert client.get("/openapi.json").status_code == 401


@pytest.fixture
def fuzz_client(make_client, monkeypatch):
    """No rate limit (hundreds of requests from one client), and no real search started: a fuzzed
    body can be a valid definition with ``start: true``, and starting processes is not under test."""
    client = make_client(rate=0)
    monkeypatch.setattr(client.app.state.server.searches, "start", lambda name, validated=False: 0)
    return client


@schema.parametrize()
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_every_operation_finds_no_server_error(fuzz_client, case):
    sent = case.as_transport_kwargs(base_url="http://testserver", headers=WRITE)
    response = fuzz_client.request(sent.pop("method"), sent.pop("url"), **sent)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
