"""Neuromosaic plugin ``api``: a REST API and a live dashboard over the results database.

It registers no component (the entry point makes it visible to ``neuromosaic-plugins``); the
server is the ``neuromosaic-api`` command. Nothing heavy is imported here: FastAPI, uvicorn and
prometheus_client load only when the server starts (``neuromosaic_api.app``).
"""

from __future__ import annotations

__version__ = "0.5.0"
__all__ = ["__version__"]
