"""The endpoints as a client sees them: content, counts, status codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

from neuromosaic_api.testing import CODE, EXPERIMENT, READ, SECRET, WRITE

from neuromosaic_core.model import TrialStatus


def test_health_needs_no_token_and_reports_the_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_is_503_when_the_database_is_unreachable(make_client, db):
    class Broken(type(db)):
        def list_experiments(self):
            raise OSError("disk gone")

    response = make_client(Broken()).get("/health")
    assert response.status_code == 503 and response.json()["database"] == "unreachable"


def test_version_names_the_api_and_core_versions(client):
    body = client.get("/version", headers=READ).json()
    assert body["api"] == metadata.version("neuromosaic-api") and body["core"].count(".") == 2


def test_experiments_list_counts_and_best(client):
    (row,) = client.get("/api/experiments", headers=READ).json()
    assert row["name"] == EXPERIMENT and row["task"] == "digits"
    assert (row["trials"], row["completed"], row["failed"]) == (12, 9, 3)
    assert row["best"] == 0.11 and row["metric"] == "val_accuracy"
    assert row["search"]["state"] == "unmanaged"


def test_trials_are_paged_in_creation_order_with_a_total(client):
    page = client.get(f"/api/experiments/{EXPERIMENT}/trials?offset=5&limit=4", headers=READ).json()
    assert page["total"] == 12 and (page["offset"], page["limit"]) == (5, 4)
    assert [t["number"] for t in page["items"]] == [6, 7, 8, 9]
    assert page["items"][0]["architecture"].startswith("mlp: fc128")
    assert "code" not in page["items"][0]


def test_trials_filter_by_status_and_a_nan_metric_reads_as_null(client):
    page = client.get(f"/api/experiments/{EXPERIMENT}/trials?status=failed", headers=READ).json()
    assert page["total"] == 3 and [t["number"] for t in page["items"]] == [4, 8, 12]
    assert page["items"][0]["metrics"] == {"loss": None}
    assert page["items"][0]["error_class"] == "nan_loss"


def test_a_bad_query_value_is_422_naming_the_field(client):
    response = client.get(f"/api/experiments/{EXPERIMENT}/trials?limit=501", headers=READ)
    assert response.status_code == 422
    assert response.json()["message"].startswith("query.limit: ")
    response = client.get(f"/api/experiments/{EXPERIMENT}/trials?status=exploded", headers=READ)
    assert response.status_code == 422 and response.json()["message"].startswith("query.status: ")


def test_one_trial_has_spec_metrics_and_code_and_the_code_is_plain_text(client):
    record = client.get(f"/api/experiments/{EXPERIMENT}/trials/1", headers=READ).json()
    assert record["status"] == "completed" and record["metrics"]["val_accuracy"] == 0.01
    assert record["spec"]["family"] == "mlp" and record["code"] == CODE
    code = client.get(f"/api/experiments/{EXPERIMENT}/trials/1/code", headers=READ)
    assert code.text == CODE
    assert code.headers["content-type"].startswith("text/plain")
    assert code.headers["x-content-type-options"] == "nosniff"


def test_unknown_experiment_and_trial_are_404_with_the_choices(client):
    response = client.get("/api/experiments/nope/trials", headers=READ)
    assert response.status_code == 404 and response.json()["detail"] == "no experiment named 'nope'; experiments: exp"
    response = client.get(f"/api/experiments/{EXPERIMENT}/trials/99", headers=READ)
    assert response.status_code == 404
    assert response.json()["detail"] == "experiment 'exp' has no trial 99; its trials are numbered 1-12"


def test_best_k_ranks_by_the_objective_and_an_unknown_metric_is_422(client):
    best = client.get(f"/api/experiments/{EXPERIMENT}/best?k=3", headers=READ).json()
    assert [t["number"] for t in best] == [11, 10, 9]
    lowest = client.get(f"/api/experiments/{EXPERIMENT}/best?k=2&metric=params&minimize=true", headers=READ).json()
    assert [t["metrics"]["params"] for t in lowest] == [1000.0, 2000.0]
    response = client.get(f"/api/experiments/{EXPERIMENT}/best?metric=speed", headers=READ)
    assert response.status_code == 422 and response.json()["message"].startswith("query.metric: ")
    assert "val_accuracy" in response.json()["message"]


def test_pareto_front_on_params_and_accuracy(client):
    front = client.get(f"/api/experiments/{EXPERIMENT}/pareto?x=params&y=val_accuracy", headers=READ).json()
    # params falls as accuracy rises here, so trial 11 (most accurate, fewest params) dominates all.
    assert [t["number"] for t in front] == [11]


def test_history_gives_every_trial_with_its_objective_value(client):
    history = client.get(f"/api/experiments/{EXPERIMENT}/history", headers=READ).json()
    assert history["metric"] == "val_accuracy" and len(history["points"]) == 12
    assert history["points"][0] == {"number": 1, "status": "completed", "value": 0.01}
    assert history["points"][3] == {"number": 4, "status": "failed", "value": None}


def test_plots_and_report_are_served_from_the_run_directory(client, tmp_path):
    run = tmp_path / "runs" / EXPERIMENT
    (run / "plots").mkdir(parents=True)
    (run / "plots" / "history.png").write_bytes(b"\x89PNG fake")
    (run / "report.html").write_text("<h1>report</h1><script>alert(1)</script>")
    assert client.get(f"/api/experiments/{EXPERIMENT}/plots", headers=READ).json() == ["history.png"]
    plot = client.get(f"/api/experiments/{EXPERIMENT}/plots/history.png", headers=READ)
    assert plot.content == b"\x89PNG fake" and plot.headers["content-type"] == "image/png"
    report = client.get(f"/api/experiments/{EXPERIMENT}/report", headers=READ)
    assert report.text.startswith("<h1>report</h1>") and report.headers["content-type"].startswith("text/html")
    assert report.headers["content-security-policy"].startswith("sandbox")  # its script cannot run as us
    info = client.get(f"/api/experiments/{EXPERIMENT}", headers=READ).json()
    assert info["plots"] == ["history.png"] and info["report"] is True


def test_a_trials_weights_are_served_and_a_trial_without_them_is_404(client, db, tmp_path):
    import attrs

    trial = db.find_trial(EXPERIMENT, 1)
    db.save_trial(attrs.evolve(trial, result=attrs.evolve(trial.result, weights_path="/elsewhere/trial-0001.pt")))
    weights = tmp_path / "runs" / EXPERIMENT / "weights"
    weights.mkdir(parents=True)
    (weights / "trial-0001.pt").write_bytes(b"PK\x03\x04 a state dict")
    (weights / "trial-0002.pt").write_bytes(b"not kept by the result")
    response = client.get(f"/api/experiments/{EXPERIMENT}/trials/1/weights", headers=READ)
    assert response.status_code == 200 and response.content == b"PK\x03\x04 a state dict"
    assert response.headers["content-type"] == "application/octet-stream"
    assert 'filename="trial-0001.pt"' in response.headers["content-disposition"]
    missing = client.get(f"/api/experiments/{EXPERIMENT}/trials/2/weights", headers=READ)  # its result has no weights
    assert missing.status_code == 404 and "has no weights" in missing.json()["detail"]
    assert client.get(f"/api/experiments/{EXPERIMENT}/trials/1/weights").status_code == 401  # a token is needed


def test_without_a_report_file_the_report_is_built_from_the_database(client):
    response = client.get(f"/api/experiments/{EXPERIMENT}/report", headers=READ)
    assert response.status_code == 200 and response.headers["content-security-policy"].startswith("sandbox")
    assert "<title>Neuromosaic report: exp</title>" in response.text
    assert '<div class="value">9</div><div class="label">completed</div>' in response.text
    assert "best val_accuracy (trial 11)" in response.text


def test_the_trial_list_follows_new_trials_of_a_running_search(client, db):
    from neuromosaic_core.testing.storage import make_trial

    before = client.get(f"/api/experiments/{EXPERIMENT}/trials?limit=1", headers=READ).json()["total"]
    db.save_trial(make_trial(EXPERIMENT, 13, status=TrialStatus.RUNNING))
    page = client.get(f"/api/experiments/{EXPERIMENT}/trials?offset=12", headers=READ).json()
    assert (before, page["total"]) == (12, 13) and page["items"][0]["status"] == "running"
    finished = db.find_trial(EXPERIMENT, 13)
    finished.status = TrialStatus.COMPLETED
    db.save_trial(finished)
    page = client.get(f"/api/experiments/{EXPERIMENT}/trials?status=completed&offset=9", headers=READ).json()
    assert [t["number"] for t in page["items"]] == [13]  # the cached list was not reused after the change


def test_create_refuses_flags_reserved_keys_and_sweeps_naming_the_item(client):
    cases = [(["--cfg", "job"], 0, "'--cfg' is not a key=value setting"),
             (["task=digits", "storage.url=sqlite:////etc/x.db"], 1, "'storage.url' is set by the API"),
             (["hydra.run.dir=/tmp/elsewhere"], 0, "'hydra.run.dir' is set by the API"),
             (["task=digits,mnist1d"], 0, "is a sweep; create one experiment per value")]
    for overrides, index, expected in cases:
        response = client.post("/api/experiments", headers=WRITE, json={"overrides": overrides})
        assert response.status_code == 422, overrides
        body = response.json()
        assert body["detail"][0]["loc"] == ["body", "overrides", index]
        assert body["message"].startswith(f"body.overrides.{index}: ") and expected in body["message"]


def test_a_malformed_body_is_422_naming_the_field(client):
    response = client.post("/api/experiments", headers=WRITE, json={"overrides": "task=digits"})
    assert response.status_code == 422 and response.json()["message"].startswith("body.overrides: ")
    response = client.post("/api/experiments", headers=WRITE, json={"overides": []})
    assert response.status_code == 422 and response.json()["message"].startswith("body.overides: ")


def test_start_and_stop_of_unknown_searches_say_why(client):
    response = client.post(f"/api/experiments/{EXPERIMENT}/start", headers=WRITE)
    assert response.status_code == 404 and "was not created through the API" in response.json()["detail"]
    response = client.post(f"/api/experiments/{EXPERIMENT}/stop", headers=WRITE)
    assert response.status_code == 409 and response.json()["detail"] == "experiment 'exp' is not running"


def test_a_too_large_body_is_413(make_client):
    client = make_client(max_body_bytes=1000)
    response = client.post("/api/experiments", headers=WRITE, json={"overrides": ["task=" + "x" * 2000]})
    assert response.status_code == 413 and "limit 1000 bytes" in response.json()["detail"]
    chunked = client.post("/api/experiments", headers={**WRITE, "Content-Type": "application/json"},
                          content=iter([b'{"overrides": ["', b"x" * 1500, b'"]}']))
    assert chunked.status_code == 413


def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not(make_client):
    from neuromosaic_api.testing import bearer, token

    client = make_client(rate=0.5, burst=3)
    statuses = [client.get("/version", headers=READ).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = client.get("/version", headers=READ)
    assert refused.headers["retry-after"] == "2" and refused.json()["detail"] == "too many requests; slow down"
    assert client.get("/version", headers=bearer(token("read", subject="someone-else"))).status_code == 200


def test_an_unexpected_error_is_a_500_with_a_request_id_and_no_traceback(make_client, db):
    class Failing(type(db)):
        def count_trials(self, experiment):
            raise RuntimeError("secret internals /srv/db password=hunter2")

    failing = Failing()
    failing.experiments, failing.trials = db.experiments, db.trials
    response = make_client(failing).get("/api/experiments", headers=READ)
    assert response.status_code == 500
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "hunter2" not in response.text and "Traceback" not in response.text and "RuntimeError" not in response.text


def test_every_write_is_audited_as_one_json_line(client, tmp_path):
    client.post("/api/experiments", headers=WRITE, json={"overrides": ["--cfg"]})
    client.post(f"/api/experiments/{EXPERIMENT}/stop", headers=READ)
    client.get("/api/experiments", headers=READ)  # a read: not audited
    lines = [json.loads(line) for line in (tmp_path / "runs" / "api-audit.log").read_text().splitlines()]
    assert [(e["method"], e["path"], e["status"], e["who"], e["scope"]) for e in lines] == [
        ("POST", "/api/experiments", 422, "token:tester", "write"),
        ("POST", f"/api/experiments/{EXPERIMENT}/stop", 403, "token:tester", "read"),
    ]
    assert all(e["time"].endswith("Z") and len(e["request_id"]) == 16 for e in lines)


def _samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_metrics_expose_latency_errors_trials_and_resources(client):
    client.get("/api/experiments", headers=READ)
    client.get("/api/experiments/nope/trials", headers=READ)
    samples = _samples(client.get("/metrics", headers=READ).text)
    assert samples["neuromosaic_api_request_duration_seconds_count{method=GET,route=/api/experiments}"] == 1
    assert samples["neuromosaic_api_request_errors_total{method=GET,route=/api/experiments/{name}/trials,status=404}"] == 1
    assert samples["neuromosaic_trials{experiment=exp,status=completed}"] == 9
    assert samples["neuromosaic_trials{experiment=exp,status=failed}"] == 3
    assert samples["neuromosaic_trial_duration_seconds_count{experiment=exp}"] == 9
    assert samples["neuromosaic_trial_duration_seconds_sum{experiment=exp}"] == 18.0
    assert samples["neuromosaic_trial_peak_memory_megabytes_sum{experiment=exp}"] == sum(100.0 + i for i in range(1, 12) if i % 4)
    assert samples["process_resident_memory_bytes{}"] > 0


def test_the_dashboard_page_loads_without_a_token_and_uses_no_outside_resource(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>Neuromosaic dashboard</title>" in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "sessionStorage" in script.text
    for text in (page.text, script.text, client.get("/static/style.css").text):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert "innerHTML" not in script.text  # untrusted data only ever goes through textContent


# -- the command -----------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    code = "import sys; from neuromosaic_api.cli import main; sys.argv[0] = 'neuromosaic-api'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={**base, **(env or {})})


def test_the_server_refuses_to_start_without_a_secret_in_one_line():
    proc = _cli("--port", "1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["neuromosaic-api: error: NEUROMOSAIC_API_SECRET is not set: the API signs its "
                                        "tokens with it; generate one with: python -c 'import secrets; "
                                        "print(secrets.token_urlsafe(32))'"]
    short = _cli("token", "--scope", "read", env={"NEUROMOSAIC_API_SECRET": "short"})
    assert short.returncode == 2 and "too short (5 bytes, at least 32)" in short.stderr and len(short.stderr.splitlines()) == 1


def test_the_token_command_issues_a_token_the_api_accepts(client):
    from neuromosaic_api.auth import verify_token

    proc = _cli("token", "--scope", "write", "--ttl", "30m", "--subject", "alice", env={"NEUROMOSAIC_API_SECRET": SECRET})
    assert proc.returncode == 0, proc.stderr
    claims = verify_token(proc.stdout.strip(), SECRET)
    assert (claims.subject, claims.scope) == ("alice", "write")
    assert client.get("/version", headers={"Authorization": f"Bearer {proc.stdout.strip()}"}).status_code == 200
    bad = _cli("token", "--scope", "write", "--ttl", "soon", env={"NEUROMOSAIC_API_SECRET": SECRET})
    assert bad.returncode == 2 and bad.stderr.strip() == ("neuromosaic-api: error: --ttl 'soon': expected a positive "
                                                          "duration such as 3600, 30m, 12h or 7d")


def test_discovery_and_the_token_command_do_not_import_the_web_stack():
    code = ("import sys; from neuromosaic_core.plugins import PluginSystem; s = PluginSystem.load(); "
            "import neuromosaic_api.cli, neuromosaic_api.auth; "
            "print('api' in [p['name'] for p in s.listing()], sorted(m for m in ('fastapi', 'uvicorn', 'starlette', "
            "'prometheus_client', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "True []", proc.stderr




def test_the_token_bucket_refills_at_its_rate_per_client():
    from neuromosaic_api.ratelimit import TokenBucketLimiter, retry_after

    now = [0.0]
    limiter = TokenBucketLimiter(rate=2, burst=2, clock=lambda: now[0], max_clients=1)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.5]  # empty: a token in 0.5 s
    now[0] = 0.5
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") == 0.5
    assert limiter.acquire("b") == 0.0  # another client has its own bucket
    assert retry_after(0.5) == "1" and retry_after(2.01) == "3"
    assert TokenBucketLimiter(rate=0, burst=1).acquire("x") == 0.0  # rate 0: no limit


# -- multi-fidelity ----------------------------------------------------------------------------


def _save_curves(db) -> None:
    """Trial 1 trained to its end (4 epochs), trial 2 pruned by a scheduler after 2; trial 3 keeps
    a result without a curve (as results before core 0.3.2)."""
    import attrs

    for number, curve, fidelity, pruned in ((1, (0.2, 0.4, 0.5, 0.55), 4, False), (2, (0.1, 0.15), 2, True)):
        trial = db.find_trial(EXPERIMENT, number)
        db.save_trial(attrs.evolve(trial, result=attrs.evolve(trial.result, curve=curve, fidelity=fidelity, pruned=pruned)))


def test_trial_responses_carry_fidelity_pruned_and_the_curve(client, db):
    _save_curves(db)
    record = client.get(f"/api/experiments/{EXPERIMENT}/trials/2", headers=READ).json()
    assert (record["fidelity"], record["pruned"], record["curve"]) == (2, True, [0.1, 0.15])
    page = client.get(f"/api/experiments/{EXPERIMENT}/trials?limit=3", headers=READ).json()
    assert [(t["fidelity"], t["pruned"], len(t["curve"])) for t in page["items"]] == [(4, False, 4), (2, True, 2), (None, False, 0)]
    best = client.get(f"/api/experiments/{EXPERIMENT}/best?k=20", headers=READ).json()
    assert {t["number"]: t["pruned"] for t in best}[2] is True
    (row,) = client.get("/api/experiments", headers=READ).json()
    assert (row["completed"], row["pruned"]) == (9, 1)
    assert client.get(f"/api/experiments/{EXPERIMENT}", headers=READ).json()["pruned"] == 1


def test_the_curve_route_gives_epochs_and_values_and_404_names_the_trials(client, db):
    _save_curves(db)
    url = f"/api/experiments/{EXPERIMENT}/trials"
    assert client.get(f"{url}/1/curve", headers=READ).json() == {
        "metric": "val_accuracy", "epochs": [1, 2, 3, 4], "values": [0.2, 0.4, 0.5, 0.55], "fidelity": 4, "pruned": False}
    assert client.get(f"{url}/2/curve", headers=READ).json() == {
        "metric": "val_accuracy", "epochs": [1, 2], "values": [0.1, 0.15], "fidelity": 2, "pruned": True}
    assert client.get(f"{url}/3/curve", headers=READ).json()["epochs"] == [], "no curve recorded: empty, not an error"
    missing = client.get(f"{url}/99/curve", headers=READ)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "experiment 'exp' has no trial 99; its trials are numbered 1-12"
    assert client.get("/api/experiments/nope/trials/1/curve", headers=READ).status_code == 404
    assert client.get(f"{url}/1/curve").status_code == 401, "a token is needed"
