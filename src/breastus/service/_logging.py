"""Structured logs: one JSON object per line, one line per request, never image data or client file names.

This module is private; use the names re-exported by :mod:`breastus.service`.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from typing import Any

from breastus.service._limits import ASGIApp, ASGIMessage, ASGIReceive, ASGIScope, ASGISend

logger = logging.getLogger("breastus.service")

_SAFE_FIELDS = ("event", "request_id", "method", "route", "status", "ms", "bytes_in", "label", "batch", "detail")


class JsonFormatter(logging.Formatter):
    """Format a log record as one JSON object: time, level, logger, message and the known extra fields.

    Only the fields in ``_SAFE_FIELDS`` are copied from ``extra=``, so an image,
    a file name or a header passed by mistake never reaches the log.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _SAFE_FIELDS:
            if hasattr(record, name):
                payload[name] = getattr(record, name)
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(payload, default=str)


def configure_json_logging(level: int = logging.INFO) -> logging.Handler:
    """Send ``breastus.service`` logs to stderr as JSON lines (returns the handler it added)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


class RequestLogMiddleware:
    """ASGI middleware logging each HTTP request as one ``request`` event.

    Logged: a sequential request id, method, path (the route, no query string),
    status, duration in ms and the declared body size. Not logged: query
    strings, headers (tokens), bodies, upload file names, client addresses.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = itertools.count(1)

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        request_id = next(self._ids)
        scope.setdefault("state", {})["request_id"] = request_id

        async def recording(message: ASGIMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
            logger.info(
                "request",
                extra={
                    "event": "request",
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "route": scope.get("path"),
                    "status": status,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "bytes_in": int(declared) if declared.isdigit() else None,
                },
            )
