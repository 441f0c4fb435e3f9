"""Neuromosaic alert channel ``webhook``: each alert as one JSON POST to a URL.

Hook implementations only; the channel is in :mod:`neuromosaic_alerts_webhook.channel`.
Turn it on with ``alerts.enabled=true alerts.channels=[log,webhook] alerts.webhook.url=URL``.
"""

from __future__ import annotations

from typing import Any

from neuromosaic_alerts_webhook.channel import WebhookChannel, WebhookSettings, check_settings
from neuromosaic_core import hookimpl

__version__ = "0.1.0"
__all__ = ["WebhookChannel", "WebhookSettings", "__version__", "register_alert_channels"]


@hookimpl
def register_alert_channels(register: Any) -> None:
    register(
        "webhook",
        WebhookChannel,
        settings=WebhookSettings,
        description="each alert as a JSON POST to alerts.webhook.url (retries with backoff, a timeout per attempt)",
        check=check_settings,
        # A Slack-style webhook URL is itself the credential; headers carry tokens.
        secret=("url", "headers"),
    )
