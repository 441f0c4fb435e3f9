"""JWT bearer tokens: HS256 signed with the server's secret, with an expiry and a scope.

Scopes: ``read`` (every query, the metrics, the documents) and ``write`` (also create, start and
stop experiments); ``write`` includes ``read``. Only HS256 is accepted, so a token claiming
``alg: none`` or any other algorithm is refused, as is one without ``exp``, ``sub`` or ``scope``.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import attrs
import jwt

ALGORITHM = "HS256"
SCOPES = ("read", "write")
#: Which scopes satisfy a requirement.
GRANTS = {"read": {"read", "write"}, "write": {"write"}}

_TTL = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class AuthError(Exception):
    """A token that cannot be accepted; the message says why (safe to show the client)."""


@attrs.frozen
class Claims:
    subject: str
    scope: str

    def allows(self, needed: str) -> bool:
        return self.scope in GRANTS[needed]


def parse_ttl(text: str) -> int:
    """``3600``, ``90s``, ``30m``, ``12h``, ``7d`` -> seconds; ValueError (one line) otherwise."""
    match = _TTL.match(text.strip().lower())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if seconds <= 0:
        raise ValueError(f"--ttl {text!r}: expected a positive duration such as 3600, 30m, 12h or 7d")
    return seconds


def issue_token(secret: str, scope: str, ttl_seconds: int, subject: str = "cli", now: float | None = None) -> str:
    """A signed token for ``subject`` with ``scope``, valid for ``ttl_seconds`` from ``now``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    issued = int(time.time() if now is None else now)
    claims = {"sub": subject, "scope": scope, "iat": issued, "exp": issued + int(ttl_seconds), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> Claims:
    """The claims of a valid token; AuthError for an expired, tampered or malformed one."""
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[ALGORITHM],
                                            options={"require": ["exp", "sub", "scope"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("the token has expired; issue a new one with: neuromosaic-api token") from None
    except jwt.PyJWTError:
        raise AuthError("the token is invalid") from None
    scope = claims.get("scope")
    if scope not in SCOPES or not isinstance(claims.get("sub"), str):
        raise AuthError("the token is invalid")
    return Claims(claims["sub"], scope)
