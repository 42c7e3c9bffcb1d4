"""The JSON the service answers with, as pydantic models (they also document the OpenAPI schema at ``/docs``).

This module is private and imports pydantic (a FastAPI dependency); it is loaded
by :func:`breastus.service.create_app` only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    """Which model answered."""

    name: str = Field(description="Architecture as '<source>/<architecture>', e.g. 'torchvision/resnet18'.")
    version: str | None = Field(description="First 12 hex digits of the SHA-256 of the model file.")


class PredictResponse(BaseModel):
    """``POST /v1/predict``: the classification of the uploaded image.

    Fields that :meth:`breastus.Prediction.to_dict` gains (lesion probability,
    box, area, ...) are passed through as extra fields.
    """

    model_config = ConfigDict(extra="allow")

    label: str = Field(description="The most probable class.")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every class; they sum to 1.")
    confidence: float = Field(description="Probability of the label.")
    model: ModelRef
    width: int = Field(description="Width of the decoded image in pixels.")
    height: int = Field(description="Height of the decoded image in pixels.")
    heatmap: str | None = Field(
        default=None, description="With ?heatmap=true: a data:image/png;base64 Grad-CAM overlay of the image."
    )
    outline: list[list[list[float]]] | None = Field(
        default=None,
        description="With ?outline=true and a model that segments: lesion contours as [x, y] image pixels.",
    )
    notice: str = Field(description="This is not a medical device.")


class ModelResponse(BaseModel):
    """``GET /v1/model``: what the model is, how it was trained and how well it did."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    architecture: str
    version: str | None
    classes: list[str]
    image_size: int
    temperature: float
    calibrated: bool
    backend: str
    training: dict[str, Any] | None
    metrics: dict[str, Any] | None
    notice: str


class HealthResponse(BaseModel):
    """``GET /healthz``."""

    status: str = Field(description="'ok' while the server runs.")
    name: str = Field(description="The served model's architecture.")
    version: str | None = Field(description="The served model's version (content hash).")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: what is wrong and how to fix it."""

    detail: str
