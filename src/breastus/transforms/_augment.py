"""Augmentations that imitate the differences between ultrasound scanners.

Another scanner, probe or operator changes the overall gain, the dynamic range
(contrast and gamma of the log-compression curve), the speckle, the lateral and
axial resolution, and the imaging depth. :func:`scanner_augmentation` draws
random versions of each during training (``TrainConfig(augmentation="scanner")``);
the geometric ones also apply to :class:`torchvision.tv_tensors.Mask`, so a
lesion mask follows the image.

The transforms here are ordinary :mod:`torchvision.transforms.v2` transforms.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from breastus._errors import ConfigError


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ConfigError(f"{name} must be a pair (a, b) with {low} <= a <= b <= {high}. Got {value!r} instead.")
    return float(value[0]), float(value[1])


def _first_image(flat_inputs: list[Any]) -> torch.Tensor:
    for item in flat_inputs:
        if isinstance(item, torch.Tensor) and not isinstance(item, tv_tensors.Mask):
            return item
    raise ConfigError("This transform needs an image tensor among its inputs.")


def _is_mask(inpt: Any) -> bool:
    return isinstance(inpt, tv_tensors.Mask)


class RandomDepthCrop(v2.Transform):  # type: ignore[misc]
    """Remove the deepest rows of the field of view, as a shallower depth setting would.

    The rows holding signal (any pixel above zero, so letterbox padding is
    ignored) are found in the image; a random fraction ``1 - keep`` of them is cut
    from the bottom. The output is smaller; resize afterwards. Masks get the same crop.

    Parameters
    ----------
    keep : tuple of float, default=(0.8, 1.0)
        Range of the fraction of signal rows that is kept.
    p : float, default=0.5
        Probability of cropping at all.

    """

    def __init__(self, keep: tuple[float, float] = (0.8, 1.0), p: float = 0.5) -> None:
        super().__init__()
        self.keep = _check_range("keep", keep, 0.05, 1.0)
        self.p = float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        image = _first_image(flat_inputs)
        height = int(image.shape[-2])
        if torch.rand(()) >= self.p:
            return {"bottom": height}
        rows = torch.nonzero(image.reshape(-1, height, image.shape[-1]).amax(dim=(0, 2)) > 0).flatten()
        if rows.numel() == 0:
            return {"bottom": height}
        top, last = int(rows[0]), int(rows[-1]) + 1
        keep = self.keep[0] + float(torch.rand(())) * (self.keep[1] - self.keep[0])
        return {"bottom": max(top + 1, top + round((last - top) * keep))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        height, width = inpt.shape[-2:]
        if params["bottom"] >= height:
            return inpt
        return TF.crop(inpt, 0, 0, params["bottom"], width)


class RandomResolution(v2.Transform):  # type: ignore[misc]
    """Lose detail as a coarser probe or a lower-resolution export would: downsample, then upsample back.

    Only images change; masks pass through.

    Parameters
    ----------
    scale : tuple of float, default=(0.35, 1.0)
        Range of the intermediate size as a fraction of the input size.
    p : float, default=0.5
        Probability of applying.

    """

    def __init__(self, scale: tuple[float, float] = (0.35, 1.0), p: float = 0.5) -> None:
        super().__init__()
        self.scale = _check_range("scale", scale, 0.01, 1.0)
        self.p = float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if torch.rand(()) >= self.p:
            return {"scale": 1.0}
        return {"scale": self.scale[0] + float(torch.rand(())) * (self.scale[1] - self.scale[0])}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        scale = params["scale"]
        if scale >= 1.0 or _is_mask(inpt):
            return inpt
        height, width = inpt.shape[-2:]
        small = TF.resize(inpt, [max(1, round(height * scale)), max(1, round(width * scale))], antialias=True)
        return TF.resize(small, [height, width], antialias=True)


class RandomGamma(v2.Transform):  # type: ignore[misc]
    """Change the grey-level curve: ``x ** gamma`` on a float image in [0, 1] (masks pass through).

    Parameters
    ----------
    gamma : tuple of float, default=(0.67, 1.5)
        Range of the exponent, drawn log-uniformly.

    """

    def __init__(self, gamma: tuple[float, float] = (0.67, 1.5)) -> None:
        super().__init__()
        self.gamma = _check_range("gamma", gamma, 0.05, 20.0)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = torch.log(torch.tensor(self.gamma))
        return {"gamma": float(torch.exp(low + torch.rand(()) * (high - low)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if _is_mask(inpt):
            return inpt
        return TF.adjust_gamma(inpt, params["gamma"])


class SpeckleNoise(v2.Transform):  # type: ignore[misc]
    """Multiply a float image in [0, 1] by spatially correlated noise of mean one.

    Ultrasound speckle is multiplicative and its grain spans a few pixels: the
    noise ``1 + sigma · n`` is drawn on a grid ``grain`` times coarser than the
    image and upsampled bilinearly. Masks pass through.

    Parameters
    ----------
    sigma : tuple of float, default=(0.0, 0.25)
        Range of the noise's standard deviation.
    grain : int, default=2
        Speckle grain in pixels.
    p : float, default=0.5
        Probability of applying.

    """

    def __init__(self, sigma: tuple[float, float] = (0.0, 0.25), grain: int = 2, p: float = 0.5) -> None:
        super().__init__()
        self.sigma = _check_range("sigma", sigma, 0.0, 2.0)
        if not isinstance(grain, int) or grain < 1:
            raise ConfigError(f"grain must be an int >= 1. Got {grain!r} instead.")
        self.grain = grain
        self.p = float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if torch.rand(()) >= self.p:
            return {"noise": None}
        image = _first_image(flat_inputs)
        height, width = image.shape[-2:]
        sigma = self.sigma[0] + float(torch.rand(())) * (self.sigma[1] - self.sigma[0])
        coarse = torch.randn(1, 1, -(-height // self.grain), -(-width // self.grain))
        noise = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        return {"noise": 1.0 + sigma * noise[0]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        noise = params["noise"]
        if noise is None or _is_mask(inpt):
            return inpt
        if not inpt.is_floating_point():
            raise ConfigError(
                "SpeckleNoise needs a float image in [0, 1]; put it after v2.ToDtype(torch.float32, scale=True)."
            )
        return (inpt * noise.to(inpt.device, inpt.dtype)).clamp_(0.0, 1.0)


def scanner_geometry(size: int, resize: v2.Transform) -> list[v2.Transform]:
    """The geometric half of the scanner augmentation (applies to images and masks).

    A random depth crop, ``resize`` back to the square (stretch or letterbox), a
    random resized crop (75–100 % of the area, aspect 0.8–1.25), a horizontal
    flip and a small affine change (±10°, ±5 % shift, 90–110 % scale).

    Parameters
    ----------
    size : int
        Output side in pixels.
    resize : torchvision.transforms.v2.Transform
        The preprocessing's resize (:meth:`~breastus.transforms.Preprocessing.resize_transform`).

    Returns
    -------
    list of torchvision.transforms.v2.Transform

    """
    return [
        RandomDepthCrop(keep=(0.8, 1.0), p=0.5),
        resize,
        v2.RandomResizedCrop((size, size), scale=(0.75, 1.0), ratio=(0.8, 1.25), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
    ]


def scanner_appearance() -> tuple[list[v2.Transform], list[v2.Transform]]:
    """The appearance half of the scanner augmentation (images only).

    Returns
    -------
    before_float, after_float : list of torchvision.transforms.v2.Transform
        Resolution loss and blur (on ``uint8``), then gain and contrast (±40 %),
        gamma (0.67–1.5) and speckle (σ ≤ 0.25) on the float image in [0, 1].

    """
    before = [
        RandomResolution(scale=(0.35, 1.0), p=0.5),
        v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=0.3),
    ]
    after = [
        v2.ColorJitter(brightness=0.4, contrast=0.4),
        RandomGamma((0.67, 1.5)),
        SpeckleNoise(sigma=(0.0, 0.25), p=0.5),
    ]
    return before, after
