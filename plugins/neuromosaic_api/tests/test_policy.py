"""The client policy on its own: which settings it admits, which it refuses and how the message
names them. No server, no plugins: the attacks through a real server are in ``test_client_policy_http.py``."""

from __future__ import annotations

import pytest
from neuromosaic_api.policy import DEFAULT_ALLOWED, ClientPolicy, PolicyError


def refusal(policy: ClientPolicy, *overrides: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy.check(list(overrides))
    return info.value


def test_the_default_admits_what_a_search_needs():
    ClientPolicy().check(["task=digits", "strategy=evolution", "strategy.population=30", "encoder=mlp_conv1d",
                          "search.trials=50", "training.epochs=3", "training.learning_rate=1e-3", "runner.workers=1",
                          "runner.timeout=120", "constraints.max_params=200000", "visualizers=[]", "experiment.name=mine",
                          "search.direction=minimize", "strategy.multivariate=false", "runner.workers=auto"])


def test_a_client_may_choose_a_scheduler_and_a_time_budget_within_bounds():
    ClientPolicy().check(["scheduler=asha", "scheduler.min_epochs=1", "scheduler.reduction_factor=4",
                          "search.time_budget=300"])
    assert "at least 2" in str(refusal(ClientPolicy(), "scheduler=asha", "scheduler.reduction_factor=1"))
    assert refusal(ClientPolicy(), "scheduler.some_future_key=1").key == "scheduler.some_future_key"


@pytest.mark.parametrize(("override", "key", "says"), [
    # the attacks of issue 14
    ("codegen=openai", "codegen", "'codegen' is not a setting clients may set"),
    ("codegen.base_url=http://127.0.0.1:18999/v1", "codegen.base_url", "--allow-setting codegen.base_url"),
    ("codegen.api_key_env=POSTGRES_PASSWORD", "codegen.api_key_env", "not a setting clients may set"),
    ("runner.python=/bin/sh", "runner.python", "under 'runner' they may set: timeout, workers;"),
    ("runner.isolation=process-group", "runner.isolation", "not a setting clients may set"),
    ("runner.memory_mb=null", "runner.memory_mb", "not a setting clients may set"),
    ("runner.processes=null", "runner.processes", "not a setting clients may set"),
    ("runner=podman", "runner", "not a setting clients may set"),
    ("strategy.provider=openai", "strategy.provider", "not a setting clients may set"),
    ("meta=surrogate", "meta", "not a setting clients may set"),
    ("debug=true", "debug", "not a setting clients may set"),
    ("visualizer.matplotlib.dpi=9000", "visualizer.matplotlib.dpi", "not a setting clients may set"),
    ("search.some_future_key=1", "search.some_future_key", "not a setting clients may set"),
    # what the API sets itself
    ("storage.url=sqlite:////tmp/x.db", "storage.url", "is set by the API"),
    ("hydra.run.dir=/tmp/elsewhere", "hydra.run.dir", "is set by the API"),
    ("+hydra.job.chdir=true", "hydra.job.chdir", "is set by the API"),
    ("hydra/launcher=basic", "hydra/launcher", "is set by the API"),
    # Hydra's syntax tricks
    ("+search.extra=1", "search.extra", "'+'/'++' add keys"),
    ("++search.trials=5", "search.trials", "'+'/'++' add keys"),
    ("~search.trials", "search.trials", "'~' deletes a setting"),
    ("strategy@search=evolution", "strategy", "'@package' moves a config group"),
    ("search.trials=choice(5,10)", "search.trials", "is a sweep"),
    ("search.trials=range(1,100)", "search.trials", "is a sweep"),
    ("search.metric=${oc.env:POSTGRES_PASSWORD}", "search.metric", "may not contain interpolations"),
    ("experiment.name='x${oc.env:HOME}'", "experiment.name", "may not contain interpolations"),
    ("experiment.name=str(${oc.env:HOME})", "experiment.name", "may not contain interpolations"),
    (r"experiment.name=\${oc.env:HOME}", "experiment.name", "may not contain interpolations"),
    ("training={epochs: 1000}", "training", "not a setting clients may set"),
    ("--cfg", "--cfg", "is not a key=value setting"),
    # paths and URLs in values of admitted keys
    ("experiment.name=../../etc", "experiment.name", "a path or a URL cannot be given"),
    ("task=../../../tmp/evil", "task", "a path or a URL cannot be given"),
    ("search.metric=http://example.org", "search.metric", "a path or a URL cannot be given"),
    ("visualizers=[matplotlib,/tmp/x]", "visualizers", "a path or a URL cannot be given"),
    ("search.trials=[1,2]", "search.trials", "expected a single value"),
    # bounds of what costs the server
    ("search.trials=100000", "search.trials", "at most 200; its operator sets the limit with --max-trials"),
    ("search.trials=0", "search.trials", "at least 1"),
    ("training.epochs=1000", "training.epochs", "at most 100; its operator sets the limit with --max-epochs"),
    ("constraints.max_params=1e12", "constraints.max_params", "--max-params"),
    ("runner.timeout=86400", "runner.timeout", "--max-trial-seconds"),
    ("runner.timeout=-1", "runner.timeout", "at least 1"),
    ("runner.workers=-2", "runner.workers", "at least 1"),
    ("task.num_samples=100000000", "task.num_samples", "at most 100,000"),
    ("training.batch_size='1000000'", "training.batch_size", "at most 4,096"),
])
def test_refused_with_the_key_named(override, key, says):
    error = refusal(ClientPolicy(), "task=digits", override)
    assert error.key == key and error.index == 1
    assert says in str(error), str(error)
    assert "\n" not in str(error)


def test_a_null_cannot_lift_a_bound():
    assert "expected a number" in str(refusal(ClientPolicy(), "constraints.max_params=null"))


def test_the_operator_widens_and_narrows_it():
    policy = ClientPolicy(allowed=["codegen", "codegen.*"], max_trials=5, max_workers=1)
    policy.check(["codegen=openai", "codegen.base_url=http://llm.internal/v1", "codegen.temperature=0.5"])  # the operator's choice
    assert "--max-trials" in str(refusal(policy, "search.trials=6"))
    assert "--max-workers" in str(refusal(policy, "runner.workers=2"))
    # never, whatever the operator allows
    assert "may not contain interpolations" in str(refusal(policy, "codegen.base_url=${oc.env:URL}"))
    assert "'+'/'++' add keys" in str(refusal(policy, "+codegen.extra=1"))
    assert "is set by the API" in str(refusal(ClientPolicy(allowed=["*"]), "storage.url=sqlite:///x.db"))


def test_keys_the_operator_sets_are_not_the_clients():
    policy = ClientPolicy(fixed=["codegen=ollama", "runner.timeout=60"])
    assert "is set by this server's operator" in str(refusal(policy, "runner.timeout=30"))
    assert "is set by this server's operator" in str(refusal(policy, "codegen=openai"))


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"allowed": ["hydra.run.dir"]}, "the API sets hydra.* itself"),
    ({"allowed": ["storage.*"]}, "the API sets storage.* itself"),
    ({"allowed": ["+search.x"]}, "expected a key such as"),
    ({"fixed": ["storage.url=sqlite:///x.db"]}, "the API sets storage.* itself"),
    ({"fixed": ["codegen"]}, "expected key=value"),
    ({"max_trials": 0}, "--max-trials 0: expected a positive number"),
])
def test_an_operator_mistake_is_one_line(kwargs, says):
    with pytest.raises(ValueError, match=None) as info:
        ClientPolicy(**kwargs)
    assert says in str(info.value)


def test_bounds_hold_on_the_composed_configuration_too():
    policy = ClientPolicy(max_epochs=10)
    composed = {"search": {"trials": 40}, "training": {"epochs": 30}, "constraints": {"max_params": 1000, "max_flops": None},
                "runner": {"workers": 1, "timeout": 600.0}}
    with pytest.raises(PolicyError) as info:
        policy.check_composed(composed, given=())
    assert info.value.key == "training.epochs"
    assert str(info.value) == ("training.epochs=30 (this server's default; set it lower): this server allows at least 1, "
                               "at most 10; its operator sets the limit with --max-epochs")
    with pytest.raises(PolicyError, match=r"^training.epochs=30: this server allows"):
        policy.check_composed(composed, given=["training.epochs"])
    with pytest.raises(PolicyError, match=r"^training.epochs=30 \(set by the operator's --set, over its own limit\)"):
        ClientPolicy(max_epochs=10, fixed=["training.epochs=30"]).check_composed(composed, given=())
    composed["training"]["epochs"] = 10
    policy.check_composed(composed, given=())


def test_the_default_list_is_exact_keys():
    # a pattern here would admit whatever a later version adds under it
    assert not [k for k in DEFAULT_ALLOWED if any(c in k for c in "*?[")]
