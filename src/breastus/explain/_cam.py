"""Class-activation maps (Grad-CAM and relatives) computed with the ``grad-cam`` package.

This module is private; use :meth:`breastus.Predictor.explain` or the names
re-exported by :mod:`breastus.explain`. The ``grad-cam`` package
(``pytorch_grad_cam``, which pulls in OpenCV) is imported on first use only, so
``import breastus`` works without it. The target layer is chosen in
:mod:`breastus.explain._layers`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from breastus._errors import ConfigError, DataError
from breastus.data._inputs import ImageInput, as_grayscale
from breastus.explain._layers import Layer, _resolve_named_layer, find_target_layer
from breastus.models._segmentation import split_outputs

if TYPE_CHECKING:
    from PIL import Image

    from breastus.transforms._contract import InputContract

CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam", "scorecam")
"""Heatmap methods :func:`class_activation_maps` accepts.

``"gradcam"`` (Selvaraju et al. 2017), ``"gradcam++"`` (Chattopadhay et al. 2018)
and ``"layercam"`` (Jiang et al. 2021) need one forward and one backward pass per
batch. ``"scorecam"`` (Wang et al. 2020) needs no gradient but one forward pass
per channel of the target layer (1,280 for EfficientNet-Lite, 512 for ResNet-18),
so it is hundreds of times slower (about 110 s of CPU time per image
against 0.2 s for Grad-CAM with EfficientNet-Lite0 at 192 px).
"""

def _import_grad_cam() -> Any:
    try:
        import pytorch_grad_cam
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "Heatmaps need the grad-cam package (pytorch_grad_cam). Install it with "
            "`pip install 'breastus[explain]'` (or `pip install grad-cam`)."
        ) from exc
    return pytorch_grad_cam


def _cam_class(method: str) -> type[Any]:
    """The ``pytorch_grad_cam`` class implementing ``method``."""
    if method not in CAM_METHODS:
        close = difflib.get_close_matches(str(method), CAM_METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"method must be one of {list(CAM_METHODS)}. Got {method!r} instead.{hint}")
    cam = _import_grad_cam()
    if method == "scorecam":
        return _quiet_score_cam(cam.ScoreCAM)
    classes: dict[str, type[Any]] = {
        "gradcam": cam.GradCAM,
        "gradcam++": cam.GradCAMPlusPlus,
        "layercam": cam.LayerCAM,
    }
    return classes[method]


def _quiet_score_cam(base: type[Any]) -> type[Any]:
    """``pytorch_grad_cam.ScoreCAM`` without its per-image progress bars, batching masks by 64."""

    class QuietScoreCAM(base):  # type: ignore[misc]
        def get_cam_weights(
            self,
            input_tensor: torch.Tensor,
            target_layer: nn.Module,
            targets: Sequence[Callable[[torch.Tensor], torch.Tensor]],
            activations: np.ndarray,
            grads: np.ndarray,
        ) -> np.ndarray:
            # Same computation as ScoreCAM.get_cam_weights: every activation channel,
            # upsampled and min-max scaled, masks the input; the softmax over channels
            # of the target scores of the masked inputs weights the channels. Channels
            # are upsampled 64 at a time so memory stays small.
            with torch.no_grad():
                maps = torch.from_numpy(activations).to(input_tensor.device)
                scores = torch.empty(maps.shape[:2], dtype=torch.float64)
                for i, (target, image) in enumerate(zip(targets, input_tensor, strict=True)):
                    for start in range(0, maps.shape[1], 64):
                        chunk = F.interpolate(
                            maps[i, start : start + 64, None],
                            size=image.shape[-2:],
                            mode="bilinear",
                            align_corners=True,
                        )
                        flat = chunk.flatten(1)
                        low, high = flat.min(dim=1)[0], flat.max(dim=1)[0]
                        chunk = (chunk - low[:, None, None, None]) / (high - low + 1e-8)[:, None, None, None]
                        outputs = self.model(image[None] * chunk)
                        scores[i, start : start + len(chunk)] = torch.stack([target(o) for o in outputs]).double().cpu()
                weights: np.ndarray = torch.softmax(scores, dim=-1).numpy()
            return weights

    return QuietScoreCAM


class _ClassScore:
    """The logit of one class, checked against the number of model outputs."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        n_outputs = output.shape[-1]
        if not 0 <= self.category < n_outputs:
            raise ConfigError(
                f"Target class index {self.category} is outside the model's {n_outputs} outputs "
                f"(allowed 0..{n_outputs - 1})."
            )
        return output[..., self.category]


def _resize_to(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``[0, 1]`` map to ``size`` = (height, width), rescaled to span [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))[None, None]
    if tuple(tensor.shape[-2:]) != tuple(size):
        tensor = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    out = tensor[0, 0].numpy().astype(np.float32)
    out -= out.min()
    peak = float(out.max())
    if peak > 0:
        out /= peak
    return np.clip(out, 0.0, 1.0)


def class_activation_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[int] | None = None,
    method: str = "gradcam",
    layer: Layer = None,
    output_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """Class-activation heatmaps of a batch, one target class per image.

    The maps are computed by ``pytorch_grad_cam`` at the target layer's
    resolution, upsampled bilinearly to the model input size, then resized
    bilinearly to each ``output_sizes`` entry and rescaled to span [0, 1]. The
    model is put in eval mode for the computation and its previous mode is
    restored; its parameter gradients are cleared.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``(B, n_classes)``.
    inputs : torch.Tensor
        The preprocessed batch ``(B, C, S, S)``, as the model sees it.
    targets : sequence of int, optional
        Class index per image; default: each image's highest logit.
    method : {"gradcam", "gradcam++", "layercam", "scorecam"}, default="gradcam"
        See :data:`CAM_METHODS`.
    layer : str, torch.nn.Module or None, default=None
        Target layer; see :func:`find_target_layer`.
    output_sizes : sequence of (int, int), optional
        ``(height, width)`` of each returned map; default the input size.

    Returns
    -------
    list of numpy.ndarray
        One ``float32`` map per image with values in [0, 1]; the maximum is 1
        unless the map is all zero (no positive evidence for the target at that layer).

    Raises
    ------
    ConfigError
        Unknown ``method`` or ``layer``, a target outside the model's outputs, or
        a ``targets``/``output_sizes`` length that differs from the batch size.
    DataError
        If ``inputs`` is not a 4-D batch.

    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise DataError(f"inputs must be a (batch, channels, height, width) tensor. Got {shape} instead.")
    batch = inputs.shape[0]
    for what, values in (("targets", targets), ("output_sizes", output_sizes)):
        if values is not None and len(values) != batch:
            raise ConfigError(f"{what} must have one entry per image ({batch}). Got {len(values)} instead.")
    cam_class = _cam_class(method)
    _, module = find_target_layer(model, layer, inputs)
    was_training = model.training
    cam = cam_class(model=model, target_layers=[module])
    try:
        with torch.inference_mode(False), torch.enable_grad():
            parameter = next(model.parameters(), None)
            device = parameter.device if parameter is not None else inputs.device
            batch_input = inputs.detach().clone().to(device).requires_grad_(True)
            chosen = None if targets is None else [_ClassScore(int(t)) for t in targets]
            maps: np.ndarray = cam(input_tensor=batch_input, targets=chosen)
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    sizes = output_sizes if output_sizes is not None else [tuple(inputs.shape[-2:])] * batch
    return [_resize_to(m, (int(size[0]), int(size[1]))) for m, size in zip(maps, sizes, strict=True)]


def resolve_targets(
    target: int | str | Sequence[int | str] | None, class_names: Sequence[str], n_images: int
) -> list[int] | None:
    """Class indices, one per image, from a class name or index, or one per image (``None`` stays ``None``).

    Raises
    ------
    ConfigError
        Unknown class name, index out of range, or a list of the wrong length.

    """
    if target is None:
        return None
    names = list(class_names)
    items: list[int | str]
    if isinstance(target, (str, int, np.integer)):
        items = [target if isinstance(target, str) else int(target)] * n_images
    else:
        items = list(target)
        if len(items) != n_images:
            raise ConfigError(f"target must be one class or one class per image ({n_images}). Got {len(items)}.")
    indices = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise ConfigError(f"Unknown target class {item!r}; the model's classes are {names}.")
            indices.append(names.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= int(item) < len(names):
            indices.append(int(item))
        else:
            raise ConfigError(
                f"A target must be a class name in {names} or an index 0..{len(names) - 1}. Got {item!r} instead."
            )
    return indices


class ExplainablePredictor(Protocol):
    """What :func:`explain_images` needs of a predictor (:class:`~breastus.Predictor` has it all).

    Explanations sit beside prediction, not above it: they take any object with
    these attributes, so :mod:`breastus.explain` never imports :mod:`breastus.prediction`.
    """

    model: nn.Module
    device: torch.device
    class_names: tuple[str, ...]
    input_contract: InputContract
    batch_size: int
    transform: Callable[[torch.Tensor], torch.Tensor]
    multitask: bool

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray: ...

    def predict(self, images: list[ImageInput]) -> list[Any]: ...


def _input_geometry(
    predictor: ExplainablePredictor, gray: Image.Image
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Where the model input comes from in the image, and where the image lies in the model input.

    Returns ``(top, bottom, left, right)`` of the field of view kept by the
    predictor's crop (the whole image without one) and the same box of the image
    content inside the square model input (all of it when stretched; the part
    between the black bars when letterboxed).
    """
    # the same geometry the multi-task Predictor uses to bring lesion masks back
    geometry = predictor.input_contract.geometry(np.asarray(gray))
    x0, y0, x1, y1 = geometry.content
    return geometry.crop, (y0, y1, x0, x1)


def _to_image(heatmap: np.ndarray, gray: Image.Image, geometry: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    """Undo the predictor's letterbox and crop: the model-input heatmap on the image's own pixel grid."""
    (top, bottom, left, right), (r0, r1, c0, c1) = geometry
    inside = _resize_to(heatmap[r0:r1, c0:c1], (bottom - top, right - left))
    if (top, bottom, left, right) == (0, gray.height, 0, gray.width):
        return inside
    full = np.zeros((gray.height, gray.width), dtype=np.float32)
    full[top:bottom, left:right] = inside
    return full


class ClassLogits(nn.Module):
    """A model that returns only the class logits of a multi-task model (for class-activation maps).

    Parameters
    ----------
    model : torch.nn.Module
        A multi-task model returning ``(mask_logits, class_logits)`` or a classifier.

    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return split_outputs(self.model(images))[1]


def class_model(predictor: ExplainablePredictor, layer: Layer) -> tuple[nn.Module, Layer]:
    """The model whose class logits are explained, and the layer (multi-task models: the encoder's last stage).

    A multi-task model returns ``(mask_logits, class_logits)``; its class head sits
    on the encoder's deepest features, so the automatic layer is the last
    spatial layer of ``model.encoder`` (``encoder.layer4`` of a ResNet encoder) and
    a named layer is looked up in the multi-task model itself.
    """
    if not predictor.multitask:
        return predictor.model, layer
    inner = predictor.model
    if layer is None:
        encoder = getattr(inner, "encoder", None)
        if isinstance(encoder, nn.Module):
            size = predictor.input_contract.image_size
            example = torch.zeros(1, 3, size, size, device=predictor.device)
            _, layer = find_target_layer(encoder, None, example)
    elif isinstance(layer, str):
        layer = _resolve_named_layer(inner, layer)
    return ClassLogits(inner), layer


def explain_images(
    predictor: ExplainablePredictor,
    images: Sequence[ImageInput],
    target: int | str | Sequence[int | str] | None = None,
    method: str = "gradcam",
    layer: Layer = None,
) -> list[np.ndarray]:
    """Heatmaps of ``images`` for a :class:`~breastus.Predictor`; see :meth:`Predictor.explain`.

    The heatmap of the model input is mapped back onto each image: the black bars
    of a letterbox resize are dropped, the rest is resized bilinearly to the field
    of view the predictor's crop kept (the whole image without a crop), and pixels
    outside that field of view get 0.
    """
    from torchvision.transforms.v2 import functional as TF

    decoded = [as_grayscale(image)[0] for image in images]
    model, layer = class_model(predictor, layer)
    indices = resolve_targets(target, predictor.class_names, len(decoded))
    if indices is None and predictor.multitask:  # the label predict gives (lesion rule)
        indices = [predictor.class_names.index(p.label) for p in predictor.predict(list(decoded))]
    if indices is None:  # the predicted class, with the predictor's own TTA and temperature
        indices = [int(i) for i in np.argmax(predictor.predict_proba(decoded), axis=1)]
    _cam_class(method)  # fail on a bad method before any work
    heatmaps: list[np.ndarray] = []
    step = max(1, predictor.batch_size)
    for start in range(0, len(decoded), step):
        chunk = decoded[start : start + step]
        batch = torch.stack([predictor.transform(TF.pil_to_tensor(gray)) for gray in chunk]).to(predictor.device)
        maps = class_activation_maps(model, batch, indices[start : start + step], method, layer)
        heatmaps += [_to_image(m, gray, _input_geometry(predictor, gray)) for m, gray in zip(maps, chunk, strict=True)]
    return heatmaps
