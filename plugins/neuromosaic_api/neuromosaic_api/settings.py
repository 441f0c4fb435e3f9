"""The server's settings (command line and environment), checked before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from neuromosaic_api.policy import ClientPolicy
from neuromosaic_core.errors import ConfigError

#: The environment variable holding the token-signing secret (never a command-line flag: flags
#: show in ``ps`` and shell history).
SECRET_ENV = "NEUROMOSAIC_API_SECRET"  # noqa: S105 - the variable's name, not a secret
#: HS256 needs a key at least as long as its hash (RFC 7518 §3.2): 32 bytes.
MIN_SECRET_BYTES = 32
SECRET_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105


def secret_from_env(environ: dict[str, str] | None = None) -> str:
    """The signing secret from :data:`SECRET_ENV`; ConfigError (one line) when unset or short."""
    secret = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not secret:
        raise ConfigError(f"{SECRET_ENV} is not set: the API signs its tokens with it; {SECRET_HINT}")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{SECRET_ENV} is too short ({len(secret.encode())} bytes, at least {MIN_SECRET_BYTES}); {SECRET_HINT}")
    return secret


@attrs.frozen
class ApiSettings:
    """What one server serves and how it guards itself.

    ``url``: the results database (as ``neuromosaic-results --url``); ``runs``: the root of the run
    directories (``runs/<experiment>`` holds plots, code, summary and report); ``rate`` and
    ``burst``: each client's token bucket (requests per second refilled, bucket size);
    ``max_body_bytes``: larger request bodies get 413; ``audit_log``: one JSON line per write
    (default ``<runs>/api-audit.log``); ``stop_grace_seconds``: how long a stopped search may take
    to store its interrupted trials before its processes are killed; ``policy``: what clients may
    set when they create an experiment (``--allow-setting``, ``--set``, ``--max-*``).
    """

    secret: str = attrs.field(repr=False)
    url: str = "sqlite:///neuromosaic.db"
    runs: Path = attrs.field(default=Path("runs"), converter=Path)
    rate: float = 20.0
    burst: int = 60
    max_body_bytes: int = 64 * 1024
    audit_log: Path | None = None
    stop_grace_seconds: float = 30.0
    policy: ClientPolicy = attrs.field(factory=ClientPolicy)

    @property
    def audit_path(self) -> Path:
        return self.audit_log if self.audit_log is not None else self.runs / "api-audit.log"
