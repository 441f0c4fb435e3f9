"""The API's response bodies as pydantic models: what the OpenAPI document promises each route returns.

Routes still build plain dicts (from :mod:`neuromosaic_core.results`); FastAPI validates them
against these models on the way out, so a route that drifts from its documented shape fails in
the tests (the schemathesis run checks every response against the document) instead of
surprising a client. Non-finite numbers (a diverged trial's loss) are sent as ``null``, which is
why every metric value may be null.

Free-form parts stay free-form on purpose: a trial's ``spec`` and ``codegen`` record are the
core's structures unstructured by cattrs (their fields belong to the core and its encoders), and
metrics and vectors are whatever the task, runner and encoder stored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from neuromosaic_core.model import ErrorClass, TrialStatus

#: A metric value: a number, or null for NaN/infinity (and for a value that was never numeric).
MetricValue = float | int | None
#: A vector coordinate, as the encoder's dimensions define them.
Coordinate = int | float | str
SearchStateName = Literal["created", "unmanaged", "running", "stopping", "stopped", "finished", "failed"]


class _Body(BaseModel):
    """A response body. Keys a newer core adds to a record are dropped, not a 500: the document
    stays the contract (``test_api`` compares whole bodies, so drift shows there)."""


# -- errors --------------------------------------------------------------------------------------


class ErrorBody(_Body):
    """Every error but 422: what went wrong in one sentence; ``request_id`` on 429, 413 and 500 (the
    server log has a 500's traceback under it)."""

    detail: str = Field(description="what went wrong, in one sentence")
    request_id: str | None = Field(None, description="the request's X-Request-ID (429, 413, 500)")


class FieldError(_Body):
    """One invalid input: where (``["query", "limit"]``, ``["body", "overrides", 0]``), why, and its kind."""

    model_config = ConfigDict(extra="allow")  # FastAPI may add ``input``/``ctx``; we send loc, msg, type
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(_Body):
    """422: every invalid input (``detail``), and ``message`` naming the first one in a line
    (``query.limit: Input should be less than or equal to 500``)."""

    detail: list[FieldError]
    message: str


# -- service -------------------------------------------------------------------------------------


class Health(_Body):
    """``/health``: 200 with ``ok`` twice, or 503 with ``unavailable``/``unreachable``."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]


class Version(_Body):
    api: str = Field(description="neuromosaic-api's version")
    core: str = Field(description="neuromosaic-core's version")


# -- experiments ---------------------------------------------------------------------------------


class SearchState(_Body):
    """The search process this server runs for an experiment, if any."""

    state: SearchStateName = Field(description="created: defined, never started here; unmanaged: in the database only")
    exit_code: int | None = Field(description="the search's exit status once it ended")
    pid: int | None = Field(description="the search process's id once started")


class Definition(_Body):
    """A search defined through the API (kept in ``<runs>/api-experiments.json``). Only ``overrides``
    is sure to be there: the file is the operator's, and older versions wrote less."""

    model_config = ConfigDict(extra="allow")  # definitions stored by a later version may carry more
    overrides: list[str]
    created_by: str | None = Field(None, description="the subject of the token that defined it")
    created_at: str | None = Field(None, description="UTC, ISO 8601")
    started_at: str | None = Field(None, description="when this API first started it (UTC, ISO 8601)")


class ExperimentRow(_Body):
    """One experiment with its trial counts, best value and search state."""

    name: str
    task: str | None
    trials: int = Field(description="all trials stored")
    completed: int
    pruned: int = Field(description="completed trials a scheduler stopped early (counted in completed too)")
    failed: int
    invalid: int
    metric: str | None = Field(description="the metric the search optimised")
    direction: Literal["maximize", "minimize"] | None
    best: MetricValue = Field(description="that metric's best completed value")
    search: SearchState


class ExperimentDetail(ExperimentRow):
    """One experiment: its row, its definition (null when not defined here), plots and report."""

    definition: Definition | None
    plots: list[str] = Field(description="plot files, relative to the run directory's plots/ folder")
    report: bool = Field(description="whether the run directory holds a report.html")


class Created(_Body):
    """201: the new (or redefined) experiment's name, its settings and its search state."""

    name: str
    overrides: list[str]
    search: SearchState


class SearchChange(_Body):
    """202: a start or stop accepted; ``search`` is the state right after."""

    name: str
    search: SearchState


# -- trials --------------------------------------------------------------------------------------


class TrialSummary(_Body):
    """A trial without spec and code (the trial list's items)."""

    number: int
    status: TrialStatus
    error_class: ErrorClass | None = Field(description="why it did not complete")
    error: str | None
    metrics: dict[str, MetricValue]
    vector: dict[str, Coordinate] = Field(description="the search-space point the strategy suggested")
    spec_hash: str | None
    architecture: str | None = Field(description="the spec in one line")
    reused_from: int | None = Field(description="the trial whose result was reused (same spec, task, training)")
    fidelity: int | None = Field(description="the epochs it was allowed; null: full")
    pruned: bool = Field(description="a scheduler stopped or paused it early")
    curve: list[MetricValue] = Field(description="the validation score after each epoch")


class TrialRecord(TrialSummary):
    """A trial with its architecture spec (best-k, the Pareto front)."""

    spec: dict[str, Any] | None = Field(description="the ArchitectureSpec, unstructured")


class TrialDetail(TrialRecord):
    """One trial whole, with its generated code and who wrote it."""

    code: str | None
    codegen: dict[str, Any] | None = Field(description="the code generator's record: provider, model, attempts")
    code_by: str | None = Field(description="who wrote the code, in one line")


class TrialPage(_Body):
    """A page of trials in creation order; ``total`` counts every matching trial."""

    experiment: str
    total: int
    offset: int
    limit: int
    items: list[TrialSummary]


class Curve(_Body):
    """A trial's learning curve: ``values[i]`` is the validation score after epoch ``epochs[i]``."""

    metric: str = Field(description="val_accuracy, or val_rmse for regression")
    epochs: list[int]
    values: list[MetricValue]
    fidelity: int | None = Field(description="the epochs it was allowed; null: full")
    pruned: bool


class HistoryPoint(_Body):
    number: int
    status: TrialStatus
    value: MetricValue = Field(description="the metric's value; null when the trial has none")


class History(_Body):
    """Every trial's number, status and value of ``metric``, for the progress plot."""

    experiment: str
    metric: str
    points: list[HistoryPoint]
