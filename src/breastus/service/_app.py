"""The FastAPI application: ``POST /v1/predict``, ``GET /v1/model``, ``GET /healthz`` and the page at ``/``.

This module is private; use :func:`breastus.service.create_app`. FastAPI is
imported when an app is created, so ``import breastus.service`` works without
the ``serve`` extra.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations
# at definition time, and ``Request`` is imported inside :func:`create_app`.
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from breastus._errors import ConfigError, DataError
from breastus.data._io import load_image
from breastus.prediction._prediction import Prediction
from breastus.prediction._predictor import Predictor
from breastus.service._batching import DynamicBatcher
from breastus.service._describe import NOTICE, describe_model
from breastus.service._limits import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    FILE_KINDS,
    MULTIPART_OVERHEAD,
    ConcurrencyGate,
    ServiceInputError,
    UploadLimitMiddleware,
    UploadTooLargeError,
    check_pixels,
    dicom_supported,
    sniff_kind,
)
from breastus.service._logging import RequestLogMiddleware
from breastus.service._render import heatmap_overlay_png, mask_outline, png_data_url
from breastus.service._security import bearer_matches

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("breastus.service")

STATIC_DIR = Path(__file__).with_name("static")
"""The web page's files (package data)."""

_SUFFIX = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _int_at_least(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}. Got {value!r} instead.")
    return value


def _can_explain(predictor: Predictor) -> bool:
    """A heatmap needs gradients: a PyTorch model with parameters (not ONNX Runtime)."""
    return next(predictor.model.parameters(), None) is not None and not getattr(predictor.model, "host_batches", False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def prediction_payload(prediction: Prediction) -> dict[str, Any]:
    """:meth:`Prediction.to_dict` for a client: without the path, arrays (masks) left out, numpy made plain."""
    payload: dict[str, Any] = {}
    for key, value in prediction.to_dict().items():
        if key in ("path", "mask") or (isinstance(value, np.ndarray) and value.ndim >= 2):
            continue
        payload[key] = _jsonable(value)
    payload["confidence"] = float(prediction.probabilities[prediction.label])
    return payload


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Check and decode an uploaded file's bytes into the grayscale image the Predictor sees.

    The type comes from the content (:func:`sniff_kind`), the pixel count from
    the header (:func:`check_pixels`), and decoding from
    :func:`breastus.data._io.load_image` (the one decoder of breastus).

    Raises
    ------
    ServiceInputError
        400 empty, 413 too many pixels, 415 unsupported type, 422 undecodable.

    """
    kind = sniff_kind(data)
    if kind == "dicom" and not dicom_supported():
        raise ServiceInputError(
            415,
            "This breastus installation cannot decode DICOM; install DICOM support (`pip install 'breastus[dicom]'`) "
            "or upload a PNG or JPEG export of the image.",
        )
    check_pixels(data, kind, max_pixels)
    try:
        return load_image(f"upload{_SUFFIX[kind]}", data=data)
    except DataError as exc:
        status = 413 if "decompression-bomb" in str(exc) else 422
        raise ServiceInputError(status, f"The uploaded {FILE_KINDS[kind]} file cannot be used: {exc}") from exc


def create_app(
    predictor: Predictor,
    *,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_concurrency: int = 32,
    max_queue: int = 64,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    max_batch: int | None = None,
    batch_wait_ms: float = 3.0,
    explainer: Predictor | None = None,
    description: Mapping[str, Any] | None = None,
) -> "FastAPI":
    """Build the breastus web service around a :class:`~breastus.Predictor`.

    Endpoints: ``POST /v1/predict`` (multipart upload in a field ``file``;
    ``?heatmap=true`` adds a Grad-CAM overlay PNG, ``?outline=true`` the lesion
    contour of a segmenting model), ``GET /v1/model``, ``GET /healthz``, and
    the web page at ``/``. Requests that arrive together are classified in one
    batch (dynamic batching); all model calls run on one worker thread.

    Parameters
    ----------
    predictor : Predictor
        The model to serve.
    token : str, optional
        When given, ``/v1/*`` needs ``Authorization: Bearer <token>`` (401
        otherwise); see :func:`load_token`.
    max_upload_bytes : int, default=20 MiB
        Largest uploaded file; a larger request body gets 413.
    max_concurrency : int, default=32
        Requests decoded and predicted at once.
    max_queue : int, default=64
        Requests allowed to wait beyond ``max_concurrency``; more get 503.
    max_image_pixels : int, default=40,000,000
        Largest image (width x height) accepted, read from the header before
        decoding (413 beyond; a decompression-bomb guard).
    max_batch : int, optional
        Largest dynamic batch; default the predictor's ``batch_size``.
    batch_wait_ms : float, default=3.0
        How long a batch waits for more requests after its first.
    explainer : Predictor, optional
        A PyTorch predictor of the same model for heatmaps when ``predictor``
        runs on ONNX Runtime (which has no gradients).
    description : mapping, optional
        What ``GET /v1/model`` answers (see :func:`describe_model`); default
        described from ``predictor`` alone.

    Returns
    -------
    fastapi.FastAPI
        Run it with uvicorn (``breastus serve`` does).

    Raises
    ------
    ConfigError
        If a limit is out of range or FastAPI is not installed.

    Examples
    --------
    >>> import uvicorn  # doctest: +SKIP
    >>> from breastus import Predictor  # doctest: +SKIP
    >>> from breastus.service import create_app  # doctest: +SKIP
    >>> app = create_app(Predictor.from_checkpoint("runs/busi/best.pt"))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP

    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import FileResponse, JSONResponse
        from fastapi.staticfiles import StaticFiles
        from starlette.concurrency import run_in_threadpool
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "The service needs FastAPI, uvicorn and python-multipart; install them with "
            "`pip install 'breastus[serve]'`."
        ) from exc

    from breastus.service._schemas import ErrorResponse, HealthResponse, ModelResponse, PredictResponse

    _int_at_least("max_upload_bytes", max_upload_bytes, 1)
    _int_at_least("max_concurrency", max_concurrency, 1)
    _int_at_least("max_queue", max_queue, 0)
    _int_at_least("max_image_pixels", max_image_pixels, 1)
    batch_limit = _int_at_least("max_batch", predictor.batch_size if max_batch is None else max_batch, 1)
    if not batch_wait_ms >= 0:
        raise ConfigError(f"batch_wait_ms must be a float >= 0. Got {batch_wait_ms!r} instead.")
    if token is not None and not token:
        raise ConfigError("token must be a non-empty string or None; load it with load_token(path).")
    painter = explainer if explainer is not None else (predictor if _can_explain(predictor) else None)

    described = dict(description) if description is not None else describe_model(predictor)
    described.setdefault("notice", NOTICE)
    model_ref = {"name": described.get("name", predictor.model_info.name), "version": described.get("version")}
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="breastus-model")

    def run_batch(images: Sequence[Image.Image]) -> list[Prediction]:
        return predictor.predict(list(images))

    batcher: DynamicBatcher[Image.Image, Prediction] = DynamicBatcher(
        run_batch, executor, max_batch=batch_limit, max_wait_s=batch_wait_ms / 1000.0
    )
    gate = ConcurrencyGate(max_concurrency, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        warm = Image.new("L", (predictor.image_size, predictor.image_size))
        await asyncio.get_running_loop().run_in_executor(executor, predictor.predict, warm)
        logger.info("ready", extra={"event": "ready", "detail": model_ref})
        try:
            yield
        finally:
            await batcher.close()
            executor.shutdown(wait=False, cancel_futures=True)

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 503)
    }
    app = FastAPI(
        title="breastus",
        summary="Breast ultrasound classification (normal / benign / malignant). Not a medical device.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.gate = gate

    def authorize(request: Request) -> None:
        if token is not None and not bearer_matches(request.headers.get("authorization"), token):
            raise ServiceInputError(401, "Missing or wrong bearer token; send `Authorization: Bearer <token>`.")

    @app.exception_handler(ServiceInputError)
    async def _input_error(request: Request, exc: ServiceInputError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            headers = {"Retry-After": "1"}
        reason = exc.message.split(" (")[0].split(";")[0][:120]  # the gist, without bytes or sizes of the upload
        logger.info("rejected", extra={"event": "rejected", "status": exc.status, "detail": reason})
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(UploadTooLargeError)
    async def _too_large(request: Request, exc: UploadTooLargeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413, headers={"Connection": "close"})

    async def read_upload(request: Request) -> bytes:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ServiceInputError(
                415,
                f"Send the image as multipart/form-data in a field named 'file' (got content type "
                f"{content_type[:60] or 'none'!r}), e.g. `curl -F file=@scan.png URL`.",
            )
        form = await request.form(max_files=1, max_fields=8)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ServiceInputError(
                    422, "The form has no file field named 'file'; send the image as `-F file=@scan.png`."
                )
            data = await upload.read()
        finally:
            await form.close()
        if len(data) > max_upload_bytes:
            raise ServiceInputError(
                413, f"The uploaded file is {len(data)} bytes, over this service's limit of {max_upload_bytes} bytes."
            )
        return data

    @app.post("/v1/predict", response_model=PredictResponse, responses=errors)
    async def predict(request: Request, heatmap: bool = False, outline: bool = False) -> JSONResponse:
        """Classify one uploaded PNG, JPEG or DICOM image (multipart field ``file``)."""
        authorize(request)
        if heatmap and painter is None:
            raise ServiceInputError(
                400,
                "Heatmaps need a PyTorch model and this service runs the model with ONNX Runtime only; serve a "
                "checkpoint (not an .onnx file), or use --backend torch.",
            )
        async with gate:
            data = await read_upload(request)
            image = await run_in_threadpool(decode_upload, data, max_image_pixels)
            prediction = await batcher.submit(image)
            payload = prediction_payload(prediction)
            payload.update(model=model_ref, width=image.width, height=image.height, notice=described["notice"])
            if heatmap and painter is not None:
                loop = asyncio.get_running_loop()
                heat = await loop.run_in_executor(executor, painter.explain, image, prediction.label)
                png = await run_in_threadpool(heatmap_overlay_png, image, heat)
                payload["heatmap"] = png_data_url(png)
            if outline:
                mask = prediction.mask
                payload["outline"] = None if mask is None else mask_outline(np.asarray(mask), image.size)
        return JSONResponse(payload)

    @app.get("/v1/model", response_model=ModelResponse, responses=errors)
    async def model(request: Request) -> JSONResponse:
        """The served model: classes, version, training data and metrics, and the notice."""
        authorize(request)
        return JSONResponse(_jsonable(described))

    @app.get("/healthz", response_model=HealthResponse)
    async def healthz() -> dict[str, Any]:
        """Liveness: answers while the server runs (no token needed)."""
        return {"status": "ok", **model_ref}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(UploadLimitMiddleware, max_body_bytes=max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(RequestLogMiddleware)
    return app
