"""Train and evaluation transform presets (torchvision.transforms.v2).

Both presets take the ``uint8`` grayscale tensor ``(1, H, W)`` that
:class:`~breastus.UltrasoundDataset` yields (or a PIL image) and return a
normalised ``float32`` tensor ``(3, size, size)``. Called as ``transform(image,
mask)`` with a :class:`torchvision.tv_tensors.Mask`, they return ``(image,
mask)``: every geometric step (crop, resize, flip, affine) moves the mask with the
image (nearest-neighbour, padding 0), the intensity steps leave it alone: the single ultrasound channel
is repeated three times so that ImageNet-pretrained stems apply unchanged, and it
is normalised with the mean and standard deviation of the model's pretrained
configuration (:class:`~breastus.models.ModelInfo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from breastus._errors import ConfigError
from breastus.transforms._augment import scanner_appearance, scanner_geometry
from breastus.transforms._preprocess import PrepareImage, Preprocessing

AugmentationName = Literal["default", "scanner"]


def _to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Repeat a single-channel image to three channels (three-channel input is kept)."""
    if image.shape[-3] == 3:
        return image
    return image[..., :1, :, :].expand(*image.shape[:-3], 3, *image.shape[-2:]).contiguous()


class ToThreeChannels(v2.Transform):  # type: ignore[misc]
    """Repeat the single grayscale channel to three channels (a :class:`~torchvision.tv_tensors.Mask` passes through)."""

    def transform(self, inpt: torch.Tensor, params: dict[str, object]) -> torch.Tensor:
        if isinstance(inpt, tv_tensors.Mask):
            mask: torch.Tensor = inpt
            return mask
        return _to_rgb(inpt)


def _check_size(image_size: int) -> int:
    if not isinstance(image_size, int) or image_size < 8:
        raise ConfigError(f"image_size must be an int >= 8. Got {image_size!r} instead.")
    return image_size


def _preprocessing(preprocessing: Preprocessing | None) -> Preprocessing:
    prep = Preprocessing() if preprocessing is None else preprocessing
    if not isinstance(prep, Preprocessing):
        raise ConfigError(f"preprocessing must be a Preprocessing or None. Got {type(prep).__name__} instead.")
    return prep


def _eval_pipeline(
    size: int, mean: Sequence[float], std: Sequence[float], prep: Preprocessing, prepared: bool
) -> v2.Compose:
    """The evaluation transform; ``prepared``: the images already went through ``prep.step(size)``."""
    return v2.Compose(
        [
            v2.ToImage(),
            *([] if prepared else [prep.step(size)]),
            ToThreeChannels(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def _train_pipeline(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    prep: Preprocessing,
    augmentation: str,
    prepared: bool,
) -> v2.Compose:
    """The training transform; ``prepared``: the images already went through ``prep.step(size)``."""
    if augmentation == "scanner":
        before_float, after_float = scanner_appearance()
        prepare = [] if prepared or not prep.changes_pixels else [PrepareImage(prep)]
        return v2.Compose(
            [
                v2.ToImage(),
                *prepare,
                *scanner_geometry(size, prep.resize_transform(size)),
                *before_float,
                v2.ToDtype(torch.float32, scale=True),
                *after_float,
                ToThreeChannels(),
                v2.Normalize(mean=list(mean), std=list(std)),
            ]
        )
    if augmentation != "default":
        raise ConfigError(f"augmentation must be 'default' or 'scanner'. Got {augmentation!r} instead.")
    # letterboxing comes before the random crop (stretching is the crop's own resize)
    if prepared:
        deterministic: list[v2.Transform] = []
    elif prep.resize == "letterbox":
        deterministic = [prep.step(size)]
    else:
        deterministic = [PrepareImage(prep)] if prep.changes_pixels else []
    return v2.Compose(
        [
            v2.ToImage(),
            *deterministic,
            v2.RandomResizedCrop((size, size), scale=(0.7, 1.0), ratio=(0.8, 1.25), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05)),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
            ToThreeChannels(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(mean), std=list(std)),
        ]
    )


def eval_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    preprocessing: Preprocessing | None = None,
) -> v2.Compose:
    """Deterministic preprocessing for validation, test and prediction.

    Applies ``preprocessing`` (field-of-view crop and intensity standardisation,
    if asked for), resizes to ``image_size`` × ``image_size`` (antialiased
    bilinear; stretched, or letterboxed with ``preprocessing.resize="letterbox"``),
    repeats the grayscale channel, scales to [0, 1] and normalises.

    Parameters
    ----------
    image_size : int
        Output side in pixels.
    mean, std : sequence of float
        Per-channel normalisation (three values).
    preprocessing : Preprocessing, optional
        Default ``Preprocessing()``: no crop, no intensity change, stretch.

    Returns
    -------
    torchvision.transforms.v2.Compose

    """
    return _eval_pipeline(_check_size(image_size), mean, std, _preprocessing(preprocessing), prepared=False)


def train_transform(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    preprocessing: Preprocessing | None = None,
    augmentation: AugmentationName = "default",
) -> v2.Compose:
    """Augmenting preprocessing for training.

    ``augmentation="default"``: a random resized crop (70–100 % of the area,
    aspect 0.8–1.25), horizontal flip, mild affine change (±10°, ±5 % shift,
    95–105 % scale) and brightness and contrast jitter (±20 %).
    ``augmentation="scanner"``: imitates another scanner — a random depth crop,
    random resized crop (75–100 %), flip, affine (±10°, 90–110 % scale), loss of
    resolution, blur, gain and contrast (±40 %), gamma and multiplicative speckle
    (see :mod:`breastus.transforms._augment`).

    Either way ``preprocessing`` runs first (with ``resize="letterbox"`` the image
    is letterboxed before the random crop), and the channel handling and
    normalisation are those of :func:`eval_transform`. Vertical flips are left
    out: depth runs downwards in an ultrasound frame.

    Parameters
    ----------
    image_size : int
        Output side in pixels.
    mean, std : sequence of float
        Per-channel normalisation (three values).
    preprocessing : Preprocessing, optional
        Default ``Preprocessing()``: no crop, no intensity change, stretch.
    augmentation : {"default", "scanner"}, default="default"

    Returns
    -------
    torchvision.transforms.v2.Compose

    Raises
    ------
    ConfigError
        If ``augmentation`` is not one of the names above.

    """
    prep = _preprocessing(preprocessing)
    return _train_pipeline(_check_size(image_size), mean, std, prep, augmentation, prepared=False)
