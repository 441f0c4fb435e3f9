"""The webhook channel: ``POST <url>`` with the alert as JSON (:meth:`Alert.to_dict`).

Retried with exponential backoff and jitter (tenacity) on what may pass: a refused or reset
connection, a timeout, HTTP 5xx and 429. Not retried: any other 4xx (the receiver refuses it;
resending the same body will not change that) and redirects (a POST is never re-sent to another
address; set the final URL). The core calls :meth:`WebhookChannel.send` on the channel's own
thread, so all of this, however long, never holds up the search.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any
from urllib.parse import urlparse

import attrs
from loguru import logger

from neuromosaic_core.alerts import Alert, AlertChannel
from neuromosaic_core.settings import SettingValueError

USER_AGENT = "neuromosaic-alerts-webhook/0.1.0"


@attrs.frozen
class WebhookSettings:
    """``alerts.webhook.*``. ``url``: the receiver (http or https). ``timeout``: seconds per
    attempt, for connecting and for each read of the answer. ``retries``: further attempts after
    a transient failure, waiting ``backoff`` × 2^n seconds (plus up to ``backoff`` of jitter, at
    most ``backoff_max``). ``headers``: extra request headers, e.g. an ``Authorization`` token
    (``+alerts.webhook.headers.Authorization='Bearer ${oc.env:ALERT_TOKEN}'`` keeps it out of the
    config files)."""

    url: str = ""
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 0.5
    backoff_max: float = 10.0
    headers: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.timeout < float("inf"):
            raise SettingValueError("timeout", f"must be a positive number of seconds, got {self.timeout}")
        if self.retries < 0:
            raise SettingValueError("retries", f"must be at least 0, got {self.retries}")
        if not 0 <= self.backoff < float("inf"):
            raise SettingValueError("backoff", f"must be 0 or more seconds, got {self.backoff}")
        if not self.backoff <= self.backoff_max < float("inf"):
            raise SettingValueError("backoff_max", f"must be at least backoff ({self.backoff:g}), got {self.backoff_max}")


def check_settings(settings: WebhookSettings) -> None:
    """Refuse, before the search starts, a URL the channel cannot post to."""
    if not settings.url:
        raise ValueError("url: required when alerts.channels lists webhook, e.g. alerts.webhook.url=https://hooks.example.com/neuromosaic")
    parsed = urlparse(settings.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"url: must be an http:// or https:// URL, got {settings.url!r}")


class TransientWebhookError(Exception):
    """Worth another attempt: connection refused or reset, timeout, HTTP 5xx or 429."""


class WebhookError(Exception):
    """Not worth another attempt: the receiver refused the alert (4xx) or redirected it."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise WebhookError(f"HTTP {code}: redirected to {newurl}; set alerts.webhook.url to the final URL")


class WebhookChannel(AlertChannel):
    """POSTs each alert to ``settings.url``; raises after the last failed attempt."""

    def __init__(self, settings: WebhookSettings) -> None:
        check_settings(settings)
        self.settings = settings
        self.attempts = 0  # every POST tried, for the log and the tests
        self._opener = urllib.request.build_opener(_NoRedirect())

    def _post(self, body: bytes) -> None:
        s = self.settings
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **s.headers}
        # http or https only: check_settings (in __init__) refused any other scheme
        request = urllib.request.Request(s.url, data=body, headers=headers, method="POST")  # noqa: S310
        self.attempts += 1
        try:
            with self._opener.open(request, timeout=s.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code == 429:
                raise TransientWebhookError(f"HTTP {exc.code} {exc.reason}") from None
            raise WebhookError(f"HTTP {exc.code} {exc.reason}: the receiver refused the alert") from None
        except urllib.error.URLError as exc:
            raise TransientWebhookError(str(exc.reason)) from None
        except (TimeoutError, ConnectionError, HTTPException, OSError) as exc:
            raise TransientWebhookError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None

    def send(self, alert: Alert) -> None:
        import tenacity

        s = self.settings
        body = json.dumps(alert.to_dict()).encode()

        def _log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0
            logger.warning(f"alert webhook: {exc}; retry {state.attempt_number}/{s.retries} in {wait:.1f}s")

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(s.retries + 1),
            wait=tenacity.wait_exponential(multiplier=s.backoff, max=s.backoff_max) + tenacity.wait_random(0, s.backoff),
            retry=tenacity.retry_if_exception_type(TransientWebhookError),
            before_sleep=_log,
            reraise=True,
        )
        retrying(self._post, body)
