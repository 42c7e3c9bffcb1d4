"""Deterministic preprocessing for images from other hospitals and scanners.

Images from another hospital differ from BUSI in ways that have nothing to do
with the lesion: black borders, rulers and side panels around the ultrasound
field of view, burned-in text, a different aspect ratio, and a different gain
and dynamic range. :class:`Preprocessing` collects the options that remove those
differences before the model sees the image. It is part of the model's
:class:`~breastus.transforms.InputContract`, stored in every checkpoint and
export, so :class:`~breastus.Predictor` applies exactly what training applied.
:meth:`Preprocessing.step` is the one implementation of the deterministic step
(crop, intensity, resize): the transforms start with it and the image cache stores
its output.

The steps run in this order on the 8-bit grayscale image:

1. **Colour and alpha** (always, at decoding, :func:`breastus.data.load_image`):
   an alpha channel is composited onto black, the background of an ultrasound
   frame, and colour (RGB, palette, CMYK ...) becomes ITU-R 601-2 luma
   ``0.299 R + 0.587 G + 0.114 B``. A colour Doppler or caliper overlay
   therefore stays in the image as a mid-grey shape; crop it out upstream if
   that matters for your data.
2. **Field-of-view crop** (``crop=True``): :func:`field_of_view_box` finds the
   largest bright connected region after removing thin structures (text,
   calipers, ruler ticks) and the image is cut to its bounding box.
3. **Intensity standardisation** (``intensity``): ``"percentile"`` maps the
   ``percentiles`` of the (cropped) image linearly onto 0–255, undoing global
   gain and contrast differences; ``"clahe"`` applies OpenCV's contrast-limited
   adaptive histogram equalisation.
4. **Resize** (``resize``) to the model's square input: ``"stretch"`` squashes
   the image (the historic behaviour), ``"letterbox"`` scales the longer side
   to the input size and pads the shorter one with black, keeping proportions.

The defaults (no crop, no intensity change, stretch) are the behaviour of
breastus before these options existed, so checkpoints without a recorded
preprocessing are read as ``Preprocessing()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils._pytree import tree_flatten
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from breastus._errors import ConfigError
from breastus.transforms._field_of_view import field_of_view_box as field_of_view_box
from breastus.transforms._intensity import _import_cv2
from breastus.transforms._intensity import clahe as clahe
from breastus.transforms._intensity import percentile_window as percentile_window

ResizeMode = Literal["stretch", "letterbox"]
IntensityMode = Literal["none", "percentile", "clahe"]


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic preprocessing applied before the model, recorded in checkpoints.

    Values are validated when the object is created (an invalid value raises
    :class:`~breastus.ConfigError`). The defaults reproduce breastus's original
    preprocessing: the whole frame, stretched to the square input.

    Parameters
    ----------
    crop : bool, default=False
        Crop to the ultrasound field of view (:func:`field_of_view_box`).
    resize : {"stretch", "letterbox"}, default="stretch"
        ``"stretch"`` squashes the image to the square input; ``"letterbox"``
        keeps the aspect ratio and pads with black.
    intensity : {"none", "percentile", "clahe"}, default="none"
        Intensity standardisation after the crop (see :func:`percentile_window`,
        :func:`clahe`; CLAHE needs ``pip install 'breastus[preprocess]'``).
    percentiles : tuple of float, default=(1.0, 99.0)
        Low and high percentile for ``intensity="percentile"``.
    clahe_clip_limit : float, default=2.0
        Clip limit for ``intensity="clahe"``.

    Examples
    --------
    >>> import torch
    >>> robust = Preprocessing(crop=True, resize="letterbox", intensity="percentile")
    >>> image = torch.zeros(1, 60, 100, dtype=torch.uint8)
    >>> image[:, 10:50, 10:90] = 100
    >>> robust.apply(image, 32).shape
    torch.Size([1, 32, 32])
    >>> Preprocessing.from_dict(robust.to_dict()) == robust
    True

    """

    crop: bool = False
    resize: ResizeMode = "stretch"
    intensity: IntensityMode = "none"
    percentiles: tuple[float, float] = (1.0, 99.0)
    clahe_clip_limit: float = 2.0

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise ConfigError(
                f"The {name!r} parameter of Preprocessing must be {allowed}. Got {getattr(self, name)!r} instead."
            )

        if not isinstance(self.crop, bool):
            fail("crop", "True or False")
        if self.resize not in ("stretch", "letterbox"):
            fail("resize", "'stretch' or 'letterbox'")
        if self.intensity not in ("none", "percentile", "clahe"):
            fail("intensity", "one of 'none', 'percentile', 'clahe'")
        if isinstance(self.percentiles, list):
            object.__setattr__(self, "percentiles", tuple(self.percentiles))
        low_high = self.percentiles
        if (
            not isinstance(low_high, tuple)
            or len(low_high) != 2
            or not all(isinstance(v, (int, float)) for v in low_high)
            or not 0 <= low_high[0] < low_high[1] <= 100
        ):
            fail("percentiles", "a pair (low, high) with 0 <= low < high <= 100")
        if not (isinstance(self.clahe_clip_limit, (int, float)) and self.clahe_clip_limit > 0):
            fail("clahe_clip_limit", "a float > 0")
        if self.intensity == "clahe":
            _import_cv2()

    @property
    def changes_pixels(self) -> bool:
        """Whether :meth:`prepare` does anything (a crop or an intensity change)."""
        return self.crop or self.intensity != "none"

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """Crop and standardise a ``uint8`` ``(1, H, W)`` image; no resize.

        Parameters
        ----------
        image : torch.Tensor
            ``uint8`` grayscale image of shape ``(1, H, W)`` (as
            :class:`~breastus.UltrasoundDataset` yields).

        Returns
        -------
        torch.Tensor
            ``uint8`` ``(1, h, w)`` with ``h <= H`` and ``w <= W``.

        """
        if not self.changes_pixels:
            return image
        array = image[0].numpy() if image.device.type == "cpu" else image[0].cpu().numpy()
        if self.crop:
            top, bottom, left, right = field_of_view_box(array)
            array = array[top:bottom, left:right]
        if self.intensity == "percentile":
            array = percentile_window(array, *self.percentiles)
        elif self.intensity == "clahe":
            array = clahe(array, self.clahe_clip_limit)
        return torch.from_numpy(np.ascontiguousarray(array))[None]

    def resize_transform(self, size: int) -> v2.Transform:
        """The transform that brings a prepared image to ``size`` × ``size``."""
        if self.resize == "letterbox":
            return Letterbox(size)
        return v2.Resize((size, size), antialias=True)

    def step(self, size: int) -> v2.Transform:
        """The whole deterministic step as one transform: :meth:`prepare`, then the resize to ``size``.

        This is the one implementation of the preprocessing: the evaluation and
        training transforms start with it, and :class:`~breastus.data.ImageCache`
        stores what it outputs (so a cached item skips it). Called as
        ``step(image, mask)`` with a :class:`torchvision.tv_tensors.Mask`, the mask
        gets the same crop and resize (nearest-neighbour), no intensity change.

        Parameters
        ----------
        size : int
            Output side in pixels.

        Returns
        -------
        torchvision.transforms.v2.Transform
            ``uint8`` ``(1, H, W)`` in, ``uint8`` ``(1, size, size)`` out.

        """
        prepare = [PrepareImage(self)] if self.changes_pixels else []
        return v2.Compose([*prepare, self.resize_transform(size)])

    def apply(self, image: torch.Tensor, size: int) -> torch.Tensor:
        """:meth:`step` applied to one image: what the model input is made from."""
        resized: torch.Tensor = self.step(size)(image)
        return resized.as_subclass(torch.Tensor)

    def apply_with_mask(self, image: torch.Tensor, mask: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` applied to an image and, with the same crop and resize, to its lesion mask.

        Parameters
        ----------
        image : torch.Tensor
            ``uint8`` ``(1, H, W)`` image.
        mask : torch.Tensor
            ``(1, H, W)`` lesion mask (resized with nearest-neighbour, never
            intensity-changed).
        size : int
            Output side.

        Returns
        -------
        image, mask : torch.Tensor
            Both ``(1, size, size)``; the mask as a plain tensor of ``mask``'s dtype.

        """
        out_image, out_mask = self.step(size)(image, tv_tensors.Mask(mask))
        return out_image.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)

    def resize_only(self) -> Preprocessing:
        """The same resize mode without crop and intensity change (for images already prepared)."""
        return Preprocessing(resize=self.resize)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a list for ``percentiles``), for checkpoints and JSON."""
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Preprocessing:
        """Inverse of :meth:`to_dict`; ``None`` or ``{}`` give the defaults.

        Raises
        ------
        ConfigError
            If ``data`` has unknown keys or invalid values.

        """
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"Unknown Preprocessing field(s) {sorted(unknown)}; known fields are {sorted(known)}. "
                "The checkpoint or config was written by a newer breastus: upgrade breastus."
            )
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)


class Letterbox(v2.Transform):  # type: ignore[misc]
    """Resize so the longer side is ``size``, then pad the shorter side with black to a square.

    Proportions are kept; the image is centred. Works jointly on images and
    :class:`torchvision.tv_tensors.Mask` (masks are padded with 0).

    Parameters
    ----------
    size : int
        Output side in pixels.

    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)
        self._steps = v2.Compose([v2.Resize(None, max_size=self.size, antialias=True), v2.CenterCrop(self.size)])

    def forward(self, *inputs: Any) -> Any:
        sized = [x for x in tree_flatten(inputs)[0] if isinstance(x, (torch.Tensor, Image.Image))]
        if sized:
            height, width = TF.get_size(sized[0])
            if int(self.size * min(height, width) / max(height, width)) == 0:
                # torchvision would give the short side 0 pixels (1 x 4000 at 32 px): keep one pixel row
                target = [1, self.size] if height < width else [self.size, 1]
                return v2.Compose([v2.Resize(target, antialias=True), v2.CenterCrop(self.size)])(*inputs)
        return self._steps(*inputs)


class PrepareImage(v2.Transform):  # type: ignore[misc]
    """Apply :meth:`Preprocessing.prepare` (crop and intensity) to an image tensor.

    A :class:`torchvision.tv_tensors.Mask` passed along gets the image's
    field-of-view crop and no intensity change, so a lesion mask stays aligned.
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.preprocessing = preprocessing

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if not self.preprocessing.crop:
            return {"box": None}
        for item in flat_inputs:
            if isinstance(item, torch.Tensor) and not isinstance(item, tv_tensors.Mask):
                return {"box": field_of_view_box(item.as_subclass(torch.Tensor)[0].cpu().numpy())}
        return {"box": None}

    def transform(self, inpt: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if isinstance(inpt, tv_tensors.Mask):
            box = params["box"]
            mask: torch.Tensor = inpt
            if box is None:
                return mask
            top, bottom, left, right = box
            cropped: torch.Tensor = tv_tensors.wrap(mask[..., top:bottom, left:right], like=mask)
            return cropped
        prepared = self.preprocessing.prepare(inpt.as_subclass(torch.Tensor))
        return prepared if type(inpt) is torch.Tensor else v2.functional.to_image(prepared)
