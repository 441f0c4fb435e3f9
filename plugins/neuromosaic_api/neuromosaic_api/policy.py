"""What a client may set when it creates an experiment: the server operator's policy.

A write token lets a client define searches that run on the server, with the server's
environment (its keys and passwords), its interpreter and its network. So the API does not pass
a client's ``key=value`` settings on as the command line would; each one must pass this policy
first, and every refusal names the setting (HTTP 422, before anything is stored or started):

- **Never**, whoever asks: ``hydra.*`` and ``storage.*`` (the API sets the run directory and the
  database itself); Hydra's key-changing syntax (``+key=``, ``++key=``, ``~key``, ``key@package=``);
  interpolations in values (``${oc.env:...}`` would be resolved against the server's environment);
  sweeps.
- **Allowed**: the keys of :data:`DEFAULT_ALLOWED` (search and training settings, trial counts,
  the strategy, encoder and task among the installed ones, and the first-party components' own
  numeric and choice settings), plus what the operator adds (``--allow-setting KEY`` or
  ``PREFIX.*``). Everything else is refused, including keys later versions add: the runner's
  internals, interpreters, isolation and limits, code generators (their endpoints and key
  variable names), the meta-learner, visualizer settings, logging, ``debug``.
- **Plain values**: a value given for a key of the default list must not name a path or a URL
  (no ``/``, ``\\`` or ``://``); a key the operator allowed takes any literal value.
- **Bounds**: settings that cost the server (trials, epochs, parameters, time per trial, workers,
  and a few sizes) must be numbers within the limits of :data:`FIXED_BOUNDS` and the operator's
  ``--max-*`` flags. They are checked twice: on the client's value, and on the composed
  configuration (so a default above the operator's limit is refused too, naming the key).
- **Operator settings**: ``--set KEY=VALUE`` overrides applied to every search after the
  client's (an LLM provider, its endpoint, the runner); a client may not set those keys.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: Top-level keys no client and no operator ``--allow-setting`` can open: the API sets them.
NEVER = ("hydra", "storage")

#: What clients may set unless the operator allows more. Exact keys (no wildcards), so a key a
#: later version adds stays refused until someone decides it is harmless. Group names
#: (``strategy``) switch the component; the installed ones are checked on composition.
DEFAULT_ALLOWED = (
    "experiment.name", "experiment.seed",
    "search.trials", "search.max_failures", "search.metric", "search.direction", "search.top_k",
    "search.reuse", "search.snapshot_every", "search.time_budget",
    "training.optimizer", "training.learning_rate", "training.weight_decay", "training.epochs",
    "training.batch_size", "training.patience", "training.val_fraction", "training.seed",
    "constraints.max_params", "constraints.max_flops", "constraints.max_depth",
    "runner.workers", "runner.timeout",
    "visualizers",
    "strategy", "encoder", "task",
    # the first-party strategies, encoders and tasks: numbers and named choices only (not
    # strategy.provider, which picks an LLM the operator did not configure, nor free prompt text)
    "strategy.mode", "strategy.population", "strategy.sample_size", "strategy.objectives",
    "strategy.max_retries", "strategy.warmup", "strategy.top_k", "strategy.history_size",
    "strategy.sampler", "strategy.n_startup_trials", "strategy.multivariate",
    "encoder.max_mlp_depth", "encoder.max_conv_blocks",
    "task.seed", "task.test_fraction", "task.num_samples",
    # a scheduler only ever trains less than the trials allowed: choosing one and its numbers is safe
    "scheduler", "scheduler.min_epochs", "scheduler.reduction_factor", "scheduler.max_epochs",
    "scheduler.grace_epochs", "scheduler.interval", "scheduler.min_trials", "scheduler.margin", "scheduler.min_full",
)


@attrs.frozen
class Bound:
    """A numeric setting's range (``high`` None: no upper limit) and the flag that sets it."""

    low: float
    high: float | None
    flag: str | None = None

    def describe(self) -> str:
        high = "no upper limit" if self.high is None else f"at most {_number(self.high)}"
        return f"at least {_number(self.low)}, {high}"


#: Bounds that hold on every server (sizes that cost memory or CPU time with no flag of their own).
FIXED_BOUNDS = {
    "search.max_failures": Bound(1, 100),
    "search.top_k": Bound(1, 100),
    "search.snapshot_every": Bound(0, 1_000_000),
    "scheduler.min_epochs": Bound(1, 1000),
    "scheduler.reduction_factor": Bound(2, 100),
    "scheduler.grace_epochs": Bound(1, 1000),
    "scheduler.interval": Bound(1, 1000),
    "scheduler.min_trials": Bound(1, 1000),
    "scheduler.min_full": Bound(1, 1000),
    "training.batch_size": Bound(2, 4096),
    "constraints.max_depth": Bound(1, 64),
    "constraints.max_flops": Bound(1, None),
    "strategy.population": Bound(1, 1000),
    "strategy.sample_size": Bound(1, 1000),
    "strategy.max_retries": Bound(1, 1000),
    "strategy.warmup": Bound(0, 1000),
    "strategy.top_k": Bound(1, 1000),
    "strategy.history_size": Bound(1, 100),
    "strategy.n_startup_trials": Bound(1, 1000),
    "task.num_samples": Bound(10, 100_000),
}


class PolicyError(ValueError):
    """A setting the policy refuses: ``key`` is the setting, ``index`` its place in the request."""

    def __init__(self, message: str, key: str, index: int | None = None) -> None:
        super().__init__(message)
        self.key, self.index = key, index


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric(value: Any) -> float | None:
    """``value`` as a number when it is one or a string of one ('5' from a quoted override), else None."""
    if _is_number(value):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _lookup(tree: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


@attrs.frozen
class ClientPolicy:
    """The settings a client may give and their bounds (see the module documentation).

    ``allowed``: exact keys or ``fnmatch`` patterns (``codegen.*``) on top of
    :data:`DEFAULT_ALLOWED`; ``fixed``: the operator's own ``key=value`` overrides, applied to every
    search after the client's; the ``max_*`` limits bound what costs the server.
    """

    allowed: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    fixed: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    max_trials: int = 200
    max_epochs: int = 100
    max_params: int = 10_000_000
    max_trial_seconds: float = 600.0
    max_workers: int | None = None  # None: the server's CPU count

    def __attrs_post_init__(self) -> None:
        for pattern in self.allowed:
            root = pattern.split(".")[0].split("@")[0].lstrip("+~")
            if root in NEVER:  # a wider pattern ('*') is fine: allows() never opens these
                raise ValueError(f"--allow-setting {pattern}: the API sets {root}.* itself (its database and run "
                                 "directory); no client may set it")
            if not pattern or pattern.startswith(("+", "~")) or "=" in pattern or "@" in pattern or "$" in pattern:
                raise ValueError(f"--allow-setting {pattern!r}: expected a key such as codegen.temperature or a pattern such as 'meta.*'")
        for item in self.fixed:
            key = _fixed_key(item)
            if key.split(".")[0] in NEVER:
                raise ValueError(f"--set {item}: the API sets {key.split('.')[0]}.* itself; leave it out")
        for name, value in (("--max-trials", self.max_trials), ("--max-epochs", self.max_epochs),
                            ("--max-params", self.max_params), ("--max-trial-seconds", self.max_trial_seconds),
                            ("--max-workers", 1 if self.max_workers is None else self.max_workers)):
            if not value > 0:
                raise ValueError(f"{name} {value}: expected a positive number")

    # -- the rules ---------------------------------------------------------------------------

    @property
    def workers_limit(self) -> int:
        return self.max_workers if self.max_workers is not None else max(1, len(os.sched_getaffinity(0)))

    def bounds(self) -> dict[str, Bound]:
        """Every bounded key: the fixed ones and those the operator's ``--max-*`` flags set."""
        return {
            **FIXED_BOUNDS,
            "search.trials": Bound(1, self.max_trials, "--max-trials"),
            "training.epochs": Bound(1, self.max_epochs, "--max-epochs"),
            "constraints.max_params": Bound(1, self.max_params, "--max-params"),
            "runner.timeout": Bound(1, self.max_trial_seconds, "--max-trial-seconds"),
            "runner.workers": Bound(1, self.workers_limit, "--max-workers"),
        }

    def fixed_keys(self) -> set[str]:
        return {_fixed_key(item) for item in self.fixed}

    def allows(self, key: str) -> bool:
        """Whether a client may set ``key`` at all (before looking at its value)."""
        if key.split(".")[0] in NEVER or key in self.fixed_keys():
            return False
        return key in DEFAULT_ALLOWED or any(fnmatch.fnmatchcase(key, pattern) for pattern in self.allowed)

    def check(self, overrides: list[str]) -> None:
        """Refuse (PolicyError naming the key) the first setting this policy does not admit."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.core.override_parser.types import OverrideType
        from hydra.errors import HydraException

        parser = OverridesParser.create()
        for index, item in enumerate(overrides):
            key, eq, _ = item.partition("=")
            key = key.strip()
            if item.startswith("-") or (not eq and not item.startswith("~")):
                raise PolicyError(f"{item!r} is not a key=value setting (command-line flags are not accepted)", key, index)
            bare = key.lstrip("+~").split("@")[0]
            if bare.split(".")[0].split("/")[0] in NEVER:
                raise PolicyError(f"{bare!r} is set by the API (its database and run directory); leave it out", bare, index)
            if "${" in item:
                raise PolicyError(f"{bare}: values may not contain interpolations ('${{...}}'): the server would resolve "
                                  "them against its own environment; give a literal value", bare, index)
            try:
                (parsed,) = parser.parse_overrides([item])
            except HydraException as exc:
                raise PolicyError(f"{bare}: {str(exc).strip().splitlines()[0]}", bare, index) from None
            bare = parsed.key_or_group
            if parsed.type == OverrideType.ADD or parsed.type == OverrideType.FORCE_ADD:
                raise PolicyError(f"{item!r}: '+'/'++' add keys the configuration does not have; the API accepts "
                                  f"only {bare}=<value> for settings clients may set", bare, index)
            if parsed.type == OverrideType.DEL:
                raise PolicyError(f"{item!r}: '~' deletes a setting; the API does not accept it", bare, index)
            if parsed.package is not None:
                raise PolicyError(f"{item!r}: '@package' moves a config group; the API does not accept it", bare, index)
            if parsed.is_sweep_override():
                raise PolicyError(f"{item!r} is a sweep; create one experiment per value", bare, index)
            if key in self.fixed_keys() or bare in self.fixed_keys():
                raise PolicyError(f"{bare!r} is set by this server's operator; leave it out", bare, index)
            if not self.allows(bare):
                raise PolicyError(self._not_allowed(bare), bare, index)
            value = parsed.value()
            if bare in DEFAULT_ALLOWED:
                self._check_plain(bare, value, index)
            bound = self.bounds().get(bare)
            # null would lift the limit; another non-number is left to the CLI's own check and message
            if bound is not None and (_numeric(value) is not None or (value is None and bound.high is not None)):
                self._check_bound(bare, self._auto(bare, value), bound, index)

    def _not_allowed(self, key: str) -> str:
        parent = key.rpartition(".")[0]
        siblings = sorted(k.rpartition(".")[2] for k in {*DEFAULT_ALLOWED, *self.allowed}
                          if parent and k.rpartition(".")[0] == parent and "*" not in k and self.allows(k))
        hint = f"under {parent!r} they may set: {', '.join(siblings)}; " if siblings else ""
        return f"{key!r} is not a setting clients may set on this server ({hint}its operator can allow it with --allow-setting {key})"

    @staticmethod
    def _check_plain(key: str, value: Any, index: int) -> None:
        if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and key != "visualizers"):
            raise PolicyError(f"{key}: expected a single value, got {value!r}", key, index)
        for text in _strings(value):
            if "/" in text or "\\" in text or "://" in text or text.startswith("~"):
                raise PolicyError(f"{key}={text!r}: a path or a URL cannot be given through the API", key, index)

    @staticmethod
    def _check_bound(key: str, value: Any, bound: Bound, index: int | None, source: str = "") -> None:
        value = _numeric(value) if _numeric(value) is not None else value
        if not _is_number(value):
            raise PolicyError(f"{key}={value!r}{source}: expected a number ({bound.describe()} on this server)", key, index)
        if value < bound.low or (bound.high is not None and value > bound.high):
            limit = f"; its operator sets the limit with {bound.flag}" if bound.flag and bound.high is not None and value > bound.high else ""
            raise PolicyError(f"{key}={_number(value)}{source}: this server allows {bound.describe()}{limit}", key, index)

    def check_composed(self, raw: Mapping[str, Any], given: Iterable[str] = ()) -> None:
        """Refuse a composed configuration whose bounded settings are out of bounds, whoever set them
        (the client, the defaults, or an interpolation in a config file); ``given``: the keys the
        client set (the message says when the value is the server's own)."""
        given = set(given)
        for key, bound in self.bounds().items():
            present, value = _lookup(raw, key)
            if not present or (value is None and key == "constraints.max_flops"):  # null: no FLOP limit
                continue
            source = ("" if key in given else " (set by the operator's --set, over its own limit)" if key in self.fixed_keys()
                      else " (this server's default; set it lower)")
            self._check_bound(key, self._auto(key, value), bound, None, source)

    @staticmethod
    def _auto(key: str, value: Any) -> Any:
        """``runner.workers=auto`` means one worker per CPU of this machine: bound that number."""
        return max(1, len(os.sched_getaffinity(0))) if key == "runner.workers" and value == "auto" else value

    def summary(self) -> dict[str, Any]:
        """The policy as data (for the docs and the server's start-up line)."""
        return {"allowed": sorted({*DEFAULT_ALLOWED, *self.allowed}), "fixed": list(self.fixed),
                "bounds": {k: [b.low, b.high] for k, b in sorted(self.bounds().items())}}


def _fixed_key(item: str) -> str:
    key, eq, _ = item.partition("=")
    if not eq or not key.strip() or key.startswith(("+", "~", "-")):
        raise ValueError(f"--set {item!r}: expected key=value, e.g. --set codegen=openai")
    return key.strip()
