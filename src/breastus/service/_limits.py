"""What the service accepts: upload size, file type by content, pixel count, and how many requests at once.

This module is private; use the names re-exported by :mod:`breastus.service`.
Nothing here imports FastAPI: the upload limit is a plain ASGI middleware and
the concurrency gate a plain :mod:`asyncio` object.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from breastus._errors import DataError

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MiB: a large uncompressed ultrasound frame is ~1-3 MiB)."""

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
"""Largest accepted image (width x height), checked from the header before decoding."""

MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a multipart body may hold beyond the file itself (boundaries, part headers, small fields)."""

FILE_KINDS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "dicom": "DICOM"}
"""Upload kinds the service recognises by content, with their display names."""


class ServiceInputError(DataError):
    """A request the service rejects; ``status`` is the HTTP status code to answer with.

    Parameters
    ----------
    status : int
        413 (too large), 415 (not a supported type), 400 or 422 (malformed).
    message : str
        What is wrong and how to fix it; sent to the client as ``detail``.

    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sniff_kind(data: bytes) -> str:
    """The kind of an uploaded file from its first bytes, never from its name or declared type.

    Parameters
    ----------
    data : bytes
        The file's contents.

    Returns
    -------
    str
        ``"png"`` (PNG signature), ``"jpeg"`` (``FF D8 FF``) or ``"dicom"``
        (``DICM`` at byte offset 128, the DICOM Part 10 preamble).

    Raises
    ------
    ServiceInputError
        400 if ``data`` is empty; 415 if it is none of the three.

    """
    if not data:
        raise ServiceInputError(400, "The uploaded file is empty (0 bytes); send the image's contents.")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    raise ServiceInputError(
        415,
        "The uploaded file is not a PNG, JPEG or DICOM image (judged by its content, not its name or declared "
        f"type; it starts with {data[:8].hex(' ')}). Convert it to PNG or send the DICOM file itself.",
    )


def dicom_supported() -> bool:
    """Whether this breastus installation can decode DICOM (``breastus.data._dicom`` exists)."""
    try:
        return importlib.util.find_spec("breastus.data._dicom") is not None
    except (ImportError, ValueError):  # pragma: no cover - a broken installation
        return False


def check_pixels(data: bytes, kind: str, max_pixels: int) -> None:
    """Refuse a PNG or JPEG whose header declares more than ``max_pixels`` pixels, before decoding it.

    A small compressed file can declare a gigantic image (a decompression bomb);
    only the header is read here. DICOM files are left to the decoder.

    Raises
    ------
    ServiceInputError
        413 if the image is too large, 422 if even the header cannot be read.

    """
    if kind == "dicom":
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        width, height = max_pixels + 1, 1
    except (OSError, SyntaxError, ValueError) as exc:
        raise ServiceInputError(
            422, f"The uploaded {FILE_KINDS[kind]} file is corrupt or truncated ({exc}); re-export the image."
        ) from exc
    if width * height > max_pixels:
        raise ServiceInputError(
            413,
            f"The uploaded image is {width} x {height} = {width * height} pixels, more than the {max_pixels} "
            "this service accepts (a decompression-bomb guard); downscale it first.",
        )


class UploadTooLargeError(Exception):
    """Raised from the wrapped ``receive`` when a request body grows past the limit."""


class UploadLimitMiddleware:
    """ASGI middleware answering 413 to request bodies over ``max_body_bytes``.

    A declared ``Content-Length`` over the limit is refused before any byte is
    read; a body that grows past it while streaming (chunked, or a lying header)
    raises :class:`UploadTooLargeError` from ``receive``, which the application turns
    into a 413 answer. Memory never holds more than the limit.

    Parameters
    ----------
    app : ASGI application
    max_body_bytes : int
        Largest body accepted.

    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_json(send, 413, {"detail": self.message(int(declared))}, close=True)
            return
        seen = 0

        async def limited() -> ASGIMessage:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise UploadTooLargeError(self.message(seen))
            return message

        await self.app(scope, limited, send)

    def message(self, size: int) -> str:
        """The 413 explanation for a body of ``size`` bytes."""
        return (
            f"The request body is {size} bytes or more, over this service's limit of {self.max_body_bytes} bytes "
            "(--max-upload-mb); send a smaller image."
        )


async def send_json(send: ASGISend, status: int, payload: dict[str, Any], close: bool = False) -> None:
    """Send a complete JSON response through a raw ASGI ``send``."""
    body = json.dumps(payload).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class ConcurrencyGate:
    """At most ``max_active`` requests inside, at most ``max_waiting`` more queued; the rest are refused.

    Parameters
    ----------
    max_active : int
        Requests decoded and predicted at once.
    max_waiting : int
        Requests allowed to wait for a free place; one more gets a 503.

    """

    max_active: int
    max_waiting: int

    def __post_init__(self) -> None:
        self._semaphore: asyncio.Semaphore | None = None
        self.waiting = 0

    async def __aenter__(self) -> ConcurrencyGate:
        if self._semaphore is None:  # created inside the running loop
            self._semaphore = asyncio.Semaphore(self.max_active)
        if self._semaphore.locked() and self.waiting >= self.max_waiting:
            raise ServiceInputError(
                503,
                f"The service is busy ({self.max_active} requests running, {self.waiting} waiting); retry in a moment.",
            )
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._semaphore is not None
        self._semaphore.release()
