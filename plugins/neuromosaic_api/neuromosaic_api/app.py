"""The FastAPI application: ``create_app(settings)`` builds one server (the tests build many).

Layers, outermost first:

- :class:`GuardMiddleware` (pure ASGI, so it sees every request, unknown routes included): a
  request id, the per-client rate limit (429 + Retry-After), the body-size limit (413), the
  latency/error metrics, the audit line of every write, and the catch-all that turns any
  unexpected exception into a 500 with a generic message and the request id (the traceback goes
  to the server's log, never to the client).
- Authentication per route: a bearer JWT with the ``read`` or ``write`` scope (:mod:`.auth`);
  only ``/health``, the dashboard page and its static files are public.
- The routes, thin over :mod:`neuromosaic_core.results` (the same queries as
  ``neuromosaic-results``) and :class:`~neuromosaic_api.searches.SearchManager`.

Generated code is untrusted: it is only ever returned as JSON data or ``text/plain``, and the
dashboard shows it with ``textContent``. Every response carries a restrictive
Content-Security-Policy; the report (HTML written by another component) is additionally served
sandboxed, so no script in it runs with the dashboard's origin.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

import neuromosaic_api
from neuromosaic_api.auth import AuthError, Claims, verify_token
from neuromosaic_api.files import inside, list_files, run_dir
from neuromosaic_api.metrics import ApiMetrics
from neuromosaic_api.ratelimit import TokenBucketLimiter, retry_after
from neuromosaic_api.schemas import (
    Created,
    Curve,
    ErrorBody,
    ExperimentDetail,
    ExperimentRow,
    Health,
    History,
    SearchChange,
    TrialDetail,
    TrialPage,
    TrialRecord,
    ValidationErrorBody,
    Version,
)
from neuromosaic_api.searches import SearchManager, SearchStateError, SettingsError
from neuromosaic_api.settings import ApiSettings
from neuromosaic_core import results
from neuromosaic_core.encryption import EncryptionKeyError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import TrialStatus

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes anyone may call: the liveness check, and the dashboard's page and files (which hold no
#: data; the page asks for a token before it calls the API).
PUBLIC_PATHS = {"/health", "/"}
PUBLIC_PREFIXES = ("/static",)
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"
#: Files from the run directory (plots, the report) are served in a sandbox: an opaque origin, so
#: their scripts (the report's own inline one) run but cannot read the dashboard's token or call
#: the API as the user.
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
              "script-src 'unsafe-inline'")
MAX_PAGE = 500


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity (a diverged trial's loss): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """JSON with non-finite floats as null instead of a 500 from ``allow_nan=False``."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> SafeJSONResponse:
    return SafeJSONResponse(body, status_code=status, headers=headers)


class _BodyTooLarge(Exception):
    pass


class ServerState:
    """Everything one app holds: settings, the database, searches, limiter, metrics, audit sink."""

    def __init__(self, settings: ApiSettings, db: ResultsDB) -> None:
        self.settings, self.db, self.closed = settings, db, False
        self.runs = settings.runs.resolve()
        self.searches = SearchManager(self.runs, settings.url, settings.stop_grace_seconds, on_stopped=db.mark_interrupted,
                                      policy=settings.policy, stored=lambda name: db.get_experiment(name) is not None)
        self.limiter = TokenBucketLimiter(settings.rate, settings.burst)
        self.metrics = ApiMetrics(db)
        self._history: dict[str, tuple[tuple[tuple[str, int], ...], list[Any]]] = {}
        self._history_lock = threading.Lock()
        self.audit_key = uuid.uuid4().hex
        settings.audit_path.parent.mkdir(parents=True, exist_ok=True)
        self.audit_sink = logger.add(str(settings.audit_path), format="{extra[audit_json]}", level="INFO",
                                     filter=lambda record: record["extra"].get("audit") == self.audit_key, enqueue=False)

    def history(self, name: str) -> list[Any]:
        """``db.list_history(name)``, reused while the per-status counts are unchanged.

        Reading 10,000 rows on every page of the trial list cost ~100 ms a request; the counts are
        one grouped query. Every transition a search makes changes them (a trial is added, or
        leaves a status for another), so a reused list has the same trials in the same statuses;
        the page's items themselves are always read fresh (``get_trials``).
        """
        key = tuple(sorted((status.value, n) for status, n in self.db.count_trials(name).items()))
        with self._history_lock:
            cached = self._history.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
        history = self.db.list_history(name)
        with self._history_lock:
            self._history[name] = (key, history)
        return history

    def claims(self, scope: Scope) -> Claims | AuthError | None:
        """The verified claims of the request's bearer token, the reason it is refused, or None (no token)."""
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                if kind.lower() != "bearer" or not token.strip():
                    return AuthError("expected an 'Authorization: Bearer <token>' header")
                try:
                    return verify_token(token.strip(), self.settings.secret)
                except AuthError as exc:
                    return exc
        return None

    def audit(self, **fields: Any) -> None:
        logger.bind(audit=self.audit_key, audit_json=json.dumps(fields, sort_keys=True)).info(
            "audit: {method} {path} -> {status} by {who}", **fields)

    def close(self) -> None:
        """Stop the searches, close the audit log and the database; only once (a test may serve
        the same app twice)."""
        if self.closed:
            return
        self.closed = True
        self.searches.shutdown()
        logger.remove(self.audit_sink)
        self.db.close()


class GuardMiddleware:
    """Request id, rate limit, body limit, metrics, audit and the catch-all 500 (see the module doc)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state, started_at = self.state, time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        claims = state.claims(scope)
        scope.setdefault("state", {}).update(request_id=request_id, claims=claims)
        client = (scope.get("client") or ("unknown", 0))[0]
        who = f"token:{claims.subject}" if isinstance(claims, Claims) else f"ip:{client}"
        sent = {"status": 500, "started": False}
        overflow = {"hit": False}  # the body outgrew the limit while the app read it

        async def send_with_headers(message: Message) -> None:
            if overflow["hit"] and not sent["started"]:
                return  # the app's answer to a cut body (FastAPI: 400) is replaced by our 413 below
            if message["type"] == "http.response.start":
                sent.update(status=message["status"], started=True)
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for key, value in ((b"x-request-id", request_id), (b"x-content-type-options", "nosniff"),
                                   (b"content-security-policy", CSP), (b"referrer-policy", "no-referrer")):
                    if key not in names:
                        headers.append((key, value.encode()))
                message["headers"] = headers
            await send(message)

        limit = state.settings.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                overflow["hit"] = True
                raise _BodyTooLarge
            return message

        try:
            wait = state.limiter.acquire(who)
            if wait > 0:
                await _json(429, {"detail": "too many requests; slow down", "request_id": request_id},
                            {"Retry-After": retry_after(wait)})(scope, receive, send_with_headers)
            elif _content_length(scope) > limit:
                await self._too_large(scope, receive, send_with_headers, request_id)
            else:
                await self.app(scope, receive_limited, send_with_headers)
                if overflow["hit"] and not sent["started"]:
                    overflow["hit"] = False
                    await self._too_large(scope, receive, send_with_headers, request_id)
        except _BodyTooLarge:
            if sent["started"]:
                raise
            overflow["hit"] = False
            await self._too_large(scope, receive, send_with_headers, request_id)
        except Exception:
            logger.opt(exception=True).error(f"request {request_id} {scope['method']} {scope['path']} failed")
            if sent["started"]:
                raise
            await _json(500, {"detail": "internal server error; the server log has the details under this request id",
                              "request_id": request_id})(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            status = int(sent["status"])
            state.metrics.observe(scope["method"], route, status, time.perf_counter() - started_at)
            if scope["method"] in WRITE_METHODS:
                state.audit(time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), who=who,
                            scope=claims.scope if isinstance(claims, Claims) else None, client=client,
                            method=scope["method"], path=scope["path"], status=status, request_id=request_id)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        body = {"detail": f"request body too large (limit {self.state.settings.max_body_bytes} bytes)", "request_id": request_id}
        await _json(413, body)(scope, receive, send)


def _content_length(scope: Scope) -> int:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


# -- authentication ------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="A token from `neuromosaic-api token --scope read|write`")


def _require(needed: str) -> Callable[..., Claims]:
    """A dependency admitting a valid token whose scope grants ``needed`` (401 without, 403 short)."""

    def check(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Claims:
        claims = request.state.claims
        if claims is None or credentials is None:
            message = claims if isinstance(claims, AuthError) else "a bearer token is required"
            raise HTTPException(401, str(message), headers={"WWW-Authenticate": "Bearer"})
        if isinstance(claims, AuthError):
            raise HTTPException(401, str(claims), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if not claims.allows(needed):
            raise HTTPException(403, f"this token's scope is {claims.scope!r}; this needs {needed!r}",
                                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'})
        return claims

    return check


#: What each error status means, for the OpenAPI document (the bodies: :mod:`.schemas`).
ERRORS: dict[int, str] = {
    400: "the request body is not readable JSON",
    401: "no valid bearer token (missing, expired, tampered, or signed with another secret)",
    403: "the token's scope does not allow this (a read token on a write route)",
    404: "unknown experiment or trial (the message names the known ones), or no such file",
    409: "the search's state does not allow this (running, not running, or not started through this API)",
    413: "request body over the server's limit",
    422: "invalid input: `detail` lists each problem, `message` names the first",
    429: "too many requests from this client; retry after `Retry-After` seconds",
    500: "unexpected server error; the server log has the details under `request_id`",
    503: "the data is encrypted at rest and this server has no key for it",
}


def _errors(*statuses: int, json_route: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route that can answer ``statuses``; 429 and 500 (the guard middleware's)
    are possible everywhere. Errors are JSON on every route: FastAPI would document a ``model`` under
    the route's own media type (text/plain, text/html), so a route that is not JSON (``json_route``
    false) names the schema itself."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 429, 500}):
        model = ValidationErrorBody if status == 422 else ErrorBody
        entry: dict[str, Any] = {"description": ERRORS[status]}
        if json_route:
            entry["model"] = model
        else:
            entry["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
        if status == 429:
            entry["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
        documented[status] = entry
    return documented


Read = Annotated[Claims, Depends(_require("read"))]
Write = Annotated[Claims, Depends(_require("write"))]
Name = Annotated[str, PathParam(min_length=1, max_length=200, description="experiment name")]
Setting = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ExperimentCreate(BaseModel):
    """A search definition: the ``neuromosaic`` command line's settings, one ``key=value`` each."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"overrides": ["task=digits", "search.trials=5", "training.epochs=3"], "start": True}]})
    overrides: list[Setting] = Field(default_factory=list, max_length=100,
                                     description="as on the command line, e.g. task=digits search.trials=10")
    start: bool = Field(False, description="start the search at once")


def _field_error(location: list[str | int], message: str) -> SafeJSONResponse:
    where = ".".join(str(part) for part in location)
    return _json(422, {"detail": [{"loc": location, "msg": message, "type": "value_error"}], "message": f"{where}: {message}"})


def create_app(settings: ApiSettings, db: ResultsDB | None = None) -> FastAPI:
    """The API and dashboard for ``settings``; ``db`` replaces opening ``settings.url`` (tests)."""
    database = db if db is not None else results.open_results(settings.url, create=True)
    state = ServerState(settings, database)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.close()

    app = FastAPI(title="Neuromosaic API", version=neuromosaic_api.__version__, lifespan=lifespan,
                  default_response_class=SafeJSONResponse, docs_url=None, redoc_url=None, openapi_url=None,
                  description="Experiments, trials, best-k and Pareto queries, searches started and stopped, "
                              "plots and reports of Neuromosaic. Every route but /health needs a bearer token "
                              "(`neuromosaic-api token --scope read|write`).")
    app.state.server = state
    app.add_middleware(GuardMiddleware, state=state)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> SafeJSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "value_error")}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _json(422, {"detail": errors, "message": f"{where}: {first['msg']}"})

    @app.exception_handler(results.UnknownExperimentError)
    @app.exception_handler(results.UnknownTrialError)
    async def not_found(_: Request, exc: Exception) -> SafeJSONResponse:
        return _json(404, {"detail": str(exc)})

    @app.exception_handler(results.UnknownMetricError)
    async def unknown_metric(request: Request, exc: results.UnknownMetricError) -> SafeJSONResponse:
        param = next((k for k, v in request.query_params.items() if v == exc.metric), "metric")
        return _field_error(["query", param], str(exc))

    @app.exception_handler(results.ResultsError)
    async def bad_query(_: Request, exc: results.ResultsError) -> SafeJSONResponse:
        return _json(422, {"detail": [{"loc": ["query"], "msg": str(exc), "type": "value_error"}], "message": str(exc)})

    @app.exception_handler(SettingsError)
    async def refused_settings(_: Request, exc: SettingsError) -> SafeJSONResponse:
        # a start whose stored definition the current policy refuses (an older version stored it)
        return _field_error(["definition", "overrides"] + ([exc.index] if exc.index is not None else []), str(exc))

    @app.exception_handler(EncryptionKeyError)
    async def no_key(_: Request, exc: EncryptionKeyError) -> SafeJSONResponse:
        # encrypted at rest, and this server was started without the key (or with another one)
        return _json(503, {"detail": str(exc)})

    @app.exception_handler(SearchStateError)
    async def search_state(_: Request, exc: SearchStateError) -> SafeJSONResponse:
        return _json(exc.status, {"detail": str(exc)})

    _routes(app, state)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Read) -> dict[str, Any]:
        return app.openapi()

    return app


def _known(state: ServerState, name: str) -> None:
    """404 unless the experiment is in the database or defined through the API."""
    if state.db.get_experiment(name) is None and state.searches.definition(name) is None:
        raise results.UnknownExperimentError(name, [e.name for e in state.db.list_experiments()] + state.searches.defined())


def _objective(state: ServerState, name: str) -> str:
    """The metric the experiment's search optimised (its stored config), else ``val_accuracy``."""
    experiment = state.db.get_experiment(name)
    search = ((experiment.config if experiment else None) or {}).get("search") or {}
    return str(search.get("metric") or "val_accuracy")


def _experiment_rows(state: ServerState) -> list[dict[str, Any]]:
    rows = results.list_experiments(state.db, history=state.history)  # the pruned counts from the cached history
    stored = {row["name"] for row in rows}
    for name in state.searches.defined():
        if name not in stored:
            rows.append({"name": name, "task": None, "trials": 0, "completed": 0, "pruned": 0, "failed": 0, "invalid": 0,
                         "metric": None, "direction": None, "best": None})
    for row in rows:
        row["search"] = state.searches.state(row["name"])
    return rows


def _routes(app: FastAPI, state: ServerState) -> None:  # noqa: C901 - one flat list of small routes
    db = state.db
    static = resources.files("neuromosaic_api") / "static"

    @app.get("/health", tags=["service"], response_model=Health,
             responses={503: {"model": Health, "description": "the database is unreachable"}, **_errors()})
    def health() -> SafeJSONResponse:
        """Liveness and database reachability (no token needed): 200, or 503 naming the problem."""
        try:
            db.list_experiments()
        except Exception as exc:
            logger.warning(f"health check: database unreachable: {type(exc).__name__}: {exc}")
            return _json(503, {"status": "unavailable", "database": "unreachable"})
        return _json(200, {"status": "ok", "database": "ok"})

    @app.get("/version", tags=["service"], response_model=Version, responses=_errors(401))
    def version(_: Read) -> dict[str, Any]:
        """Versions of the API and the core."""
        return {"api": neuromosaic_api.__version__, "core": metadata.version("neuromosaic-core")}

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse, responses=_errors(401, json_route=False))
    def prometheus(_: Read) -> Response:
        """Prometheus exposition: request latencies and errors per route, trials per experiment and status,
        trial duration, CPU time and peak memory, and the server process's own resource use."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/experiments", tags=["experiments"], response_model=list[ExperimentRow], responses=_errors(401))
    def experiments(_: Read) -> list[dict[str, Any]]:
        """Every experiment (stored, or created here and not yet run) with trial counts, best value and search state."""
        return _experiment_rows(state)

    @app.post("/api/experiments", tags=["experiments"], status_code=201, response_model=Created,
              responses=_errors(400, 401, 403, 409, 413, 422))
    def create(claims: Write, body: Annotated[ExperimentCreate, Body()]) -> Any:
        """Define a search from command-line settings: only those this server lets clients set, within its
        bounds, validated as `neuromosaic` validates them (422 names the offending setting); with `start`, start
        it. Its name comes from the settings (experiment.name); 409 for a name the database holds from a search
        this API did not start."""
        try:
            name = state.searches.create(body.overrides, claims.subject)
        except SettingsError as exc:
            location: list[str | int] = ["body", "overrides"] + ([exc.index] if exc.index is not None else [])
            return _field_error(location, str(exc))
        if body.start:
            state.searches.start(name, validated=True)
        return {"name": name, "overrides": body.overrides, "search": state.searches.state(name)}

    @app.get("/api/experiments/{name}", tags=["experiments"], response_model=ExperimentDetail,
             responses=_errors(401, 404, 422))
    def experiment(name: Name, _: Read) -> dict[str, Any]:
        """One experiment: counts, best value, search state, its definition, plots and whether a report exists."""
        _known(state, name)
        row = next(r for r in _experiment_rows(state) if r["name"] == name)
        directory = run_dir(state.runs, name)
        row["definition"] = state.searches.definition(name)
        row["plots"] = list_files(directory / "plots") if directory else []
        row["report"] = bool(directory and inside(directory, "report.html"))
        return row

    @app.post("/api/experiments/{name}/start", tags=["experiments"], status_code=202, response_model=SearchChange,
              responses=_errors(401, 403, 404, 409, 422))
    def start(name: Name, _: Write) -> dict[str, Any]:
        """Start (or resume: interrupted trials are re-run) a search created through the API; its settings are
        checked again against the server's current policy (422). 409 when it is running, or when the database
        holds an experiment of that name that this API did not start."""
        state.searches.start(name)
        return {"name": name, "search": state.searches.state(name)}

    @app.post("/api/experiments/{name}/stop", tags=["experiments"], status_code=202, response_model=SearchChange,
              responses=_errors(401, 403, 409, 422))
    def stop(name: Name, _: Write) -> dict[str, Any]:
        """Stop a running search as Ctrl-C would: its running trials are stored as interrupted."""
        state.searches.stop(name)
        return {"name": name, "search": state.searches.state(name)}

    @app.get("/api/experiments/{name}/trials", tags=["trials"], response_model=TrialPage, responses=_errors(401, 404, 422))
    def trials(name: Name, _: Read, status: TrialStatus | None = None,
               offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
               limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> dict[str, Any]:
        """Trials in creation order, optionally of one status, a page at a time (`offset`, `limit` up to 500);
        `total` counts the matching trials. Items carry metrics, vector, architecture, `fidelity` (epochs allowed;
        null: full), `pruned` and the learning `curve`, not code."""
        _known(state, name)
        history = state.history(name)  # no spec or code, and cached while nothing changed
        if status is not None:
            history = [t for t in history if t.status == status]
        page = history[offset:offset + limit]
        whole = {t.id: t for t in db.get_trials(name, [t.id for t in page if t.id is not None])}
        items = [results.trial_record(whole.get(t.id, t), spec=False) for t in page]
        return {"experiment": name, "total": len(history), "offset": offset, "limit": limit, "items": items}

    @app.get("/api/experiments/{name}/trials/{number}", tags=["trials"], response_model=TrialDetail,
             responses=_errors(401, 404, 422, 503))
    def trial(name: Name, number: Annotated[int, PathParam(ge=0, le=10**9)], _: Read) -> dict[str, Any]:
        """One trial whole: status, metrics, vector, spec, fidelity, pruned, learning curve, the generated code (as
        text) and who wrote it."""
        found = results.trial(db, name, number)
        record = results.trial_record(found, code=True)
        record["code_by"] = results.codegen_summary(found)
        return record

    @app.get("/api/experiments/{name}/trials/{number}/curve", tags=["trials"], response_model=Curve,
             responses=_errors(401, 404, 422))
    def curve(name: Name, number: Annotated[int, PathParam(ge=0, le=10**9)], _: Read) -> dict[str, Any]:
        """The trial's learning curve: `values[i]` is its validation score (`metric`: val_accuracy, or val_rmse for
        regression) after epoch `epochs[i]`; `fidelity` the epochs it was allowed (null: full), `pruned` whether a
        scheduler stopped it early. Empty lists for a trial that trained no epoch; 404 for an unknown trial."""
        return results.curve_record(results.trial(db, name, number, need_code=False))

    @app.get("/api/experiments/{name}/trials/{number}/code", tags=["trials"], response_class=PlainTextResponse,
             responses=_errors(401, 404, 422, 503, json_route=False))
    def code(name: Name, number: Annotated[int, PathParam(ge=0, le=10**9)], _: Read) -> PlainTextResponse:
        """The trial's generated code as text/plain (never executed by the server); 404 when it has none."""
        found = results.trial(db, name, number)
        if not found.code:
            raise HTTPException(404, f"trial {number} of {name!r} has no code")
        return PlainTextResponse(found.code, headers={"Content-Disposition": f'inline; filename="trial-{number:04d}.py"'})

    @app.get("/api/experiments/{name}/trials/{number}/weights", tags=["files"], response_class=Response,
             responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the state dict, as torch.save wrote it"}, **_errors(401, 404, 422, 503)})
    def weights(name: Name, number: Annotated[int, PathParam(ge=0, le=10**9)], _: Read) -> Response:
        """The trial's trained weights: the state dict the harness saved (`torch.load(f, weights_only=True)`),
        from the run directory's `weights/` folder, decrypted when they are encrypted at rest. 404 when the
        trial kept none (failed, or reused from an earlier trial: fetch that one) or the file is gone."""
        found = results.trial(db, name, number)
        directory = run_dir(state.runs, name)
        kept = found.result is not None and found.result.weights_path
        path = inside(directory / "weights", f"trial-{number:04d}.pt") if directory and kept else None
        if path is None:
            why = f"reused from trial {found.reused_from}" if found.reused_from is not None else "none were kept"
            raise HTTPException(404, f"trial {number} of {name!r} has no weights ({why})")
        from neuromosaic_core.encryption import EncryptedResultsDB, bytes_fingerprint

        data = path.read_bytes()
        if bytes_fingerprint(data) is not None:
            if not isinstance(db, EncryptedResultsDB):
                raise EncryptionKeyError(f"trial {number}'s weights are encrypted at rest and this server has no key")
            data = db.keys.decrypt_bytes(data, f"trial {number}'s weights")
        return Response(data, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="trial-{number:04d}.pt"'})

    @app.get("/api/experiments/{name}/history", tags=["trials"], response_model=History, responses=_errors(401, 404, 422))
    def history(name: Name, _: Read, metric: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
        """Every trial's number, status and value of `metric` (default: the search's objective), for the
        progress plot."""
        _known(state, name)
        metric = metric or _objective(state, name)
        points = []
        for t in state.history(name):
            value = t.result.metrics.get(metric) if t.result is not None else None
            points.append({"number": t.number, "status": TrialStatus(t.status).value,
                           "value": value if isinstance(value, (int, float)) and not isinstance(value, bool) else None})
        return {"experiment": name, "metric": metric, "points": points}

    @app.get("/api/experiments/{name}/best", tags=["queries"], response_model=list[TrialRecord],
             responses=_errors(401, 404, 422))
    def best(name: Name, _: Read, k: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
             metric: Annotated[str | None, Query(max_length=200)] = None, minimize: bool = False) -> list[dict[str, Any]]:
        """The k completed trials with the best `metric` (default: the search's objective), best first."""
        _known(state, name)
        chosen = metric or _objective(state, name)
        return [results.trial_record(t) for t in results.best_trials(db, name, k=k, metric=chosen, maximize=not minimize)]

    @app.get("/api/experiments/{name}/pareto", tags=["queries"], response_model=list[TrialRecord],
             responses=_errors(401, 404, 422))
    def pareto(name: Name, _: Read, x: Annotated[str, Query(max_length=200)] = "params",
               y: Annotated[str, Query(max_length=200)] = "val_accuracy",
               maximize_x: bool = False, minimize_y: bool = False) -> list[dict[str, Any]]:
        """The completed trials no other dominates on (x, y): x minimised and y maximised unless flipped."""
        front = results.pareto_front(db, name, x=x, y=y, minimize_x=not maximize_x, maximize_y=not minimize_y)
        return [results.trial_record(t) for t in front]

    @app.get("/api/experiments/{name}/plots", tags=["files"], response_model=list[str], responses=_errors(401, 404, 422))
    def plots(name: Name, _: Read) -> list[str]:
        """The plot files of the experiment's run directory (paths relative to its plots/ folder)."""
        _known(state, name)
        directory = run_dir(state.runs, name)
        return list_files(directory / "plots") if directory else []

    @app.get("/api/experiments/{name}/plots/{path:path}", tags=["files"], response_class=FileResponse,
             responses={200: {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                              "description": "the file as a visualizer wrote it (PNG, SVG, HTML, ...)"},
                        **_errors(401, 404, 422, json_route=False)})
    def plot(name: Name, path: str, _: Read) -> FileResponse:
        """One plot file; 404 for anything that does not resolve to a file inside the run's plots/ folder."""
        _known(state, name)
        directory = run_dir(state.runs, name)
        found = inside(directory / "plots", path) if directory else None
        if found is None:
            raise HTTPException(404, f"no plot {path!r} in experiment {name!r}")
        return FileResponse(found, headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/api/experiments/{name}/report", tags=["files"], response_class=HTMLResponse,
             responses=_errors(401, 404, 422, json_route=False))
    def report(name: Name, _: Read, fresh: bool = False) -> Response:
        """The experiment's HTML report, sandboxed. The run directory's report.html (written at the end of
        each run, with plots) when there is one and `fresh` is false; otherwise built now from the database
        (tables, history and landscape; no plots), which also serves a search still running."""
        _known(state, name)
        directory = run_dir(state.runs, name)
        found = inside(directory, "report.html") if directory and not fresh else None
        if found is not None:
            return FileResponse(found, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})
        if db.get_experiment(name) is None:
            raise HTTPException(404, f"experiment {name!r} has no trials yet, so no report")
        from neuromosaic_visualizer_html.report import collect, render_html

        page = render_html([collect(db, name, visualizers=[])], source=None)
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(Path(str(static)))), name="static")
