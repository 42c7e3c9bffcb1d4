"""The breastus web service: an HTTP API and a web page around a :class:`~breastus.Predictor`.

:func:`create_app` builds a FastAPI application (``pip install 'breastus[serve]'``;
FastAPI is imported when an app is created, not when this package is): ``POST
/v1/predict`` classifies an uploaded PNG, JPEG or DICOM image, ``GET /v1/model``
describes the model, ``GET /healthz`` answers while it runs, and ``/`` is a page
to drop an image on. ``breastus serve CHECKPOINT`` runs it with uvicorn.
Uploads are checked by content, size and pixel count before decoding; requests
that arrive together share one forward pass. It is not a medical device.
"""

from breastus.service._app import create_app as create_app
from breastus.service._app import decode_upload as decode_upload
from breastus.service._app import prediction_payload as prediction_payload
from breastus.service._batching import DynamicBatcher as DynamicBatcher
from breastus.service._describe import NOTICE as NOTICE
from breastus.service._describe import describe_model as describe_model
from breastus.service._limits import DEFAULT_MAX_IMAGE_PIXELS as DEFAULT_MAX_IMAGE_PIXELS
from breastus.service._limits import DEFAULT_MAX_UPLOAD_BYTES as DEFAULT_MAX_UPLOAD_BYTES
from breastus.service._limits import ServiceInputError as ServiceInputError
from breastus.service._limits import sniff_kind as sniff_kind
from breastus.service._load import SERVE_BACKENDS as SERVE_BACKENDS
from breastus.service._load import ServedModel as ServedModel
from breastus.service._load import load_served_model as load_served_model
from breastus.service._logging import JsonFormatter as JsonFormatter
from breastus.service._logging import configure_json_logging as configure_json_logging
from breastus.service._render import heatmap_overlay_png as heatmap_overlay_png
from breastus.service._render import mask_outline as mask_outline
from breastus.service._security import bearer_matches as bearer_matches
from breastus.service._security import load_token as load_token

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "NOTICE",
    "SERVE_BACKENDS",
    "DynamicBatcher",
    "JsonFormatter",
    "ServedModel",
    "ServiceInputError",
    "bearer_matches",
    "configure_json_logging",
    "create_app",
    "decode_upload",
    "describe_model",
    "heatmap_overlay_png",
    "load_served_model",
    "load_token",
    "mask_outline",
    "prediction_payload",
    "sniff_kind",
]
