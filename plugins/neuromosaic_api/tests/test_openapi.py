"""The OpenAPI document: the committed copy matches what the server serves, and fuzzing every
operation in it (schemathesis, a valid write token) never gets a 5xx, and every answer is one the
document promises: a documented status code and content type, and a body valid against that
status's schema (errors included)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from neuromosaic_api.testing import EXPERIMENT, READ, WRITE
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from neuromosaic_core.model import TrialResult, TrialStatus
from neuromosaic_core.testing.storage import make_trial

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


CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
               response_headers_conformance]


@schema.parametrize()
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzing_every_operation_gets_documented_answers(fuzz_client, case):
    sent = case.as_transport_kwargs(base_url="http://testserver", headers=WRITE)
    response = fuzz_client.request(sent.pop("method"), sent.pop("url"), **sent)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text)
    case.validate_response(response, checks=CONFORMANCE, headers=WRITE)


def test_every_operation_documents_typed_answers_and_errors():
    """No route answers an untyped dict: each success has a schema (or a declared file type), and
    each documents its errors with a schema, which the fuzzing above then holds the server to."""
    document = json.loads(COMMITTED.read_text())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            (success,) = [status for status in responses if status.startswith("2")]
            content = responses[success]["content"]
            if "application/json" in content:
                assert content["application/json"]["schema"], f"{where}: an untyped JSON answer"
            for status in {"429", "500"} | ({"401"} if operation.get("security") else set()):
                schema_of = responses[status]["content"]["application/json"]["schema"]
                assert schema_of["$ref"].endswith("/ErrorBody"), f"{where}: {status} is not documented"


@pytest.fixture
def full_client(make_client, db, tmp_path):
    """The example experiment plus what the fuzzer rarely reaches: a trial with a learning curve (one
    NaN), pruned at 2 epochs; trial 1's weights; a plot and a report file in the run directory; and a
    search defined by an older version (its stored definition has no created_at), never run."""
    result = TrialResult(metrics={"val_accuracy": 0.5, "params": 10.0}, curve=(0.25, math.nan), fidelity=2, pruned=True)
    db.save_trial(make_trial(EXPERIMENT, 13, status=TrialStatus.COMPLETED, result=result))
    first = db.find_trial(EXPERIMENT, 1)
    db.save_trial(attrs.evolve(first, result=attrs.evolve(first.result, weights_path="weights/trial-0001.pt")))
    run = tmp_path / "runs" / EXPERIMENT
    for folder in ("weights", "plots"):
        (run / folder).mkdir(parents=True)
    (run / "weights" / "trial-0001.pt").write_bytes(b"PK\x03\x04 a state dict")
    (run / "plots" / "history.png").write_bytes(b"\x89PNG fake")
    (run / "report.html").write_text("<h1>report</h1>")
    legacy = {"legacy": {"overrides": ["task=digits"], "created_by": "old"}}
    (tmp_path / "runs" / "api-experiments.json").write_text(json.dumps(legacy))
    return make_client()


E = f"/api/experiments/{EXPERIMENT}"
#: (method, URL, token, the status a client must get)
REAL_REQUESTS = [
    ("GET", "/health", None, 200), ("GET", "/version", READ, 200), ("GET", "/version", None, 401),
    ("GET", "/metrics", READ, 200), ("GET", "/api/experiments", READ, 200), ("GET", E, READ, 200),
    ("GET", "/api/experiments/legacy", READ, 200), ("GET", "/api/experiments/nope", READ, 404),
    ("GET", f"{E}/trials?limit=500", READ, 200), ("GET", f"{E}/trials?status=failed", READ, 200),
    ("GET", f"{E}/trials?limit=0", READ, 422), ("GET", f"{E}/trials/1", READ, 200), ("GET", f"{E}/trials/4", READ, 200),
    ("GET", f"{E}/trials/13", READ, 200), ("GET", f"{E}/trials/99", READ, 404), ("GET", f"{E}/trials/13/curve", READ, 200),
    ("GET", f"{E}/trials/4/curve", READ, 200), ("GET", f"{E}/trials/1/code", READ, 200),
    ("GET", f"{E}/trials/1/code", None, 401), ("GET", f"{E}/trials/1/weights", READ, 200),
    ("GET", f"{E}/trials/2/weights", READ, 404), ("GET", f"{E}/history", READ, 200),
    ("GET", f"{E}/history?metric=loss", READ, 200), ("GET", f"{E}/best?k=20", READ, 200),
    ("GET", f"{E}/best?metric=speed", READ, 422), ("GET", f"{E}/pareto", READ, 200), ("GET", f"{E}/plots", READ, 200),
    ("GET", f"{E}/plots/history.png", READ, 200), ("GET", f"{E}/plots/nope.png", READ, 404),
    ("GET", f"{E}/report", READ, 200), ("GET", f"{E}/report?fresh=true", READ, 200),
    ("GET", "/api/experiments/nope/report", READ, 404), ("POST", f"{E}/stop", WRITE, 409),
    ("POST", f"{E}/stop", READ, 403), ("POST", f"{E}/start", WRITE, 404),
]


def test_answers_on_real_data_are_the_documented_ones(full_client):
    """Every route's answers for stored trials (NaN metrics, a failed trial, a learning curve, code,
    weights, files) and its usual errors (401, 403, 404, 409, 422) match the document."""
    for method, url, headers, status in REAL_REQUESTS:
        response = full_client.request(method, url, headers=headers or {})
        assert response.status_code == status, (method, url, response.text)
        path = url.partition("?")[0]
        operation = schema.find_operation_by_path(method, path)
        parameters = {template[1:-1]: value for template, value in zip(operation.path.split("/"), path.split("/"), strict=True)
                      if template.startswith("{")}
        operation.Case(path_parameters=parameters).validate_response(response, checks=CONFORMANCE)
    legacy = full_client.get("/api/experiments/legacy", headers=READ).json()
    assert legacy["definition"]["created_by"] == "old" and legacy["task"] is None and legacy["search"]["state"] == "created"
    assert full_client.get(f"{E}/trials/13/curve", headers=READ).json() == {
        "metric": "val_accuracy", "epochs": [1, 2], "values": [0.25, None], "fidelity": 2, "pruned": True}
    item = full_client.get(f"{E}/trials?offset=12", headers=READ).json()["items"][0]
    assert set(item) == {"number", "status", "error_class", "error", "metrics", "vector", "spec_hash", "architecture",
                         "reused_from", "fidelity", "pruned", "curve"}
    assert item["vector"]["big"] == 2**53 + 1 and item["curve"] == [0.25, None]
