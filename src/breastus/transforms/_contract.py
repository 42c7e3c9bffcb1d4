"""The input contract: everything a model expects of its input, in one object.

As torchvision's weights carry their transforms, every breastus model carries one
:class:`InputContract`: the square input side, the normalisation and the
:class:`~breastus.transforms.Preprocessing`. It is built once, when training
starts (:meth:`breastus.TrainConfig.input_contract`), stored once in the checkpoint
(:attr:`breastus.models.Checkpoint.input_contract`) and in an export's metadata
(one ``input_contract`` JSON entry), and read back by everything that makes model
inputs: the :class:`~breastus.Predictor` (:attr:`Predictor.input_contract
<breastus.Predictor.input_contract>`), the int8 calibration of an export, the
explanations and the training and validation transforms. None of them rebuilds
the pipeline from loose fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from torchvision.transforms import v2

from breastus._errors import ConfigError
from breastus.transforms._field_of_view import field_of_view_box
from breastus.transforms._geometry import InputGeometry, input_geometry
from breastus.transforms._preprocess import Preprocessing
from breastus.transforms._presets import AugmentationName, _eval_pipeline, _train_pipeline

_FIELDS = ("image_size", "mean", "std", "preprocessing")


@dataclass(frozen=True)
class InputContract:
    """What a model expects of its input: size, normalisation and preprocessing.

    The model input is made from an 8-bit grayscale image (colour and alpha are
    converted at decoding) by :meth:`Preprocessing.step
    <breastus.transforms.Preprocessing.step>` (field-of-view crop, intensity
    standardisation, resize to ``image_size`` × ``image_size``), the channel
    repeated three times, scaled to [0, 1] and normalised with ``mean`` and
    ``std``: :meth:`eval_transform` is exactly that.

    Values are validated when the object is created (an invalid value raises
    :class:`~breastus.ConfigError`).

    Parameters
    ----------
    image_size : int
        Square input side in pixels (>= 8).
    mean, std : sequence of float
        Per-channel normalisation, three values each (``std`` > 0); stored as tuples.
    preprocessing : Preprocessing or dict, default=Preprocessing()
        A dict is read with :meth:`Preprocessing.from_dict
        <breastus.transforms.Preprocessing.from_dict>`.

    Examples
    --------
    >>> from breastus.transforms import InputContract, Preprocessing
    >>> contract = InputContract(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), Preprocessing(resize="letterbox"))
    >>> InputContract.from_dict(contract.to_dict()) == contract
    True
    >>> import torch
    >>> contract.eval_transform()(torch.zeros(1, 40, 60, dtype=torch.uint8)).shape
    torch.Size([3, 32, 32])

    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise ConfigError(
                f"The {name!r} parameter of InputContract must be {allowed}. Got {getattr(self, name)!r} instead."
            )

        size = self.image_size
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
            fail("image_size", "an int >= 8")
        object.__setattr__(self, "image_size", int(size))
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (
                isinstance(values, (str, bytes))
                or not isinstance(values, Sequence | np.ndarray)
                or len(values) != 3
                or not all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) for v in values)
                or not all(math.isfinite(float(v)) for v in values)
                or (name == "std" and not all(float(v) > 0 for v in values))
            ):
                fail(name, "three finite floats" + (" > 0" if name == "std" else ""))
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if isinstance(self.preprocessing, Mapping):
            object.__setattr__(self, "preprocessing", Preprocessing.from_dict(dict(self.preprocessing)))
        if not isinstance(self.preprocessing, Preprocessing):
            fail("preprocessing", "a Preprocessing or a dict of its fields")

    def step(self) -> v2.Transform:
        """The deterministic step, :meth:`Preprocessing.step <breastus.transforms.Preprocessing.step>` at ``image_size``.

        ``uint8`` ``(1, H, W)`` in (and optionally a mask), ``uint8``
        ``(1, image_size, image_size)`` out: what :class:`~breastus.data.ImageCache` stores.
        """
        return self.preprocessing.step(self.image_size)

    def eval_transform(self, prepared: bool = False) -> v2.Compose:
        """The deterministic model-input transform (validation, test, prediction).

        Parameters
        ----------
        prepared : bool, default=False
            ``True`` for images that already went through :meth:`step` (items of
            an :class:`~breastus.data.ImageCache` built from this contract): the
            step is left out, the rest is the same.

        Returns
        -------
        torchvision.transforms.v2.Compose
            ``uint8`` ``(1, H, W)`` (or PIL) in, normalised ``float32``
            ``(3, image_size, image_size)`` out; ``transform(image, mask)`` moves a
            :class:`torchvision.tv_tensors.Mask` along.

        """
        return _eval_pipeline(self.image_size, self.mean, self.std, self.preprocessing, prepared)

    def train_transform(self, augmentation: AugmentationName = "default", prepared: bool = False) -> v2.Compose:
        """The augmenting training transform (see :func:`~breastus.transforms.train_transform`).

        Parameters
        ----------
        augmentation : {"default", "scanner"}, default="default"
        prepared : bool, default=False
            As in :meth:`eval_transform`: the images already went through :meth:`step`.

        Returns
        -------
        torchvision.transforms.v2.Compose

        Raises
        ------
        ConfigError
            If ``augmentation`` is unknown.

        """
        return _train_pipeline(self.image_size, self.mean, self.std, self.preprocessing, augmentation, prepared)

    def geometry(self, image: np.ndarray) -> InputGeometry:
        """Where the ``(H, W)`` grayscale ``image`` lies in the model input (its crop and content box).

        Prediction brings lesion masks back with it, explanations their heatmaps.
        """
        height, width = int(image.shape[-2]), int(image.shape[-1])
        box = field_of_view_box(image) if self.preprocessing.crop else (0, height, 0, width)
        return input_geometry(height, width, box, self.preprocessing, self.image_size)

    def without_crop(self) -> InputContract:
        """The same contract without the field-of-view crop (for images the caller has already cropped)."""
        return replace(self, preprocessing=replace(self.preprocessing, crop=False))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, a dict for the preprocessing), for checkpoints and JSON."""
        return {
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "preprocessing": self.preprocessing.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputContract:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ConfigError
            If ``data`` is not a mapping, misses a field, has unknown fields or an invalid value.

        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"An InputContract is read from a dict with the keys {list(_FIELDS)}. Got {type(data).__name__} "
                "instead."
            )
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"Unknown InputContract field(s) {sorted(unknown)}; known fields are {sorted(known)}. "
                "The checkpoint or export was written by a newer breastus: upgrade breastus."
            )
        missing = [k for k in ("image_size", "mean", "std") if k not in data]
        if missing:
            raise ConfigError(
                f"The InputContract is missing {missing}; it needs {list(_FIELDS)} (preprocessing optional). "
                "The file was edited or damaged: export or save it again."
            )
        return cls(data["image_size"], data["mean"], data["std"], Preprocessing.from_dict(data.get("preprocessing")))


def resolve_contract(
    contract: InputContract | None,
    image_size: int | None,
    preprocessing: Preprocessing | Mapping[str, Any] | None,
    mean: Sequence[float],
    std: Sequence[float],
    owner: str,
) -> InputContract:
    """The contract of an object built either from a contract or from the older loose arguments.

    ``contract`` wins; ``image_size`` and ``preprocessing``, when also given, must
    agree with it. Without ``contract`` they make one with ``mean`` and ``std``
    (the model's normalisation).

    Raises
    ------
    ConfigError
        If both are given and disagree, or neither ``contract`` nor ``image_size`` is.

    """
    prep = Preprocessing.from_dict(dict(preprocessing)) if isinstance(preprocessing, Mapping) else preprocessing
    if contract is None:
        if image_size is None:
            raise ConfigError(f"{owner} needs an input_contract (or the older image_size). Got neither.")
        return InputContract(image_size, tuple(mean), tuple(std), Preprocessing() if prep is None else prep)  # type: ignore[arg-type]
    if not isinstance(contract, InputContract):
        raise ConfigError(
            f"The 'input_contract' parameter of {owner} must be an InputContract. Got {type(contract).__name__} "
            "instead."
        )
    if image_size is not None and int(image_size) != contract.image_size:
        raise ConfigError(
            f"{owner} got image_size={image_size!r} and an input_contract of image_size={contract.image_size}; "
            "pass the input_contract alone."
        )
    if prep is not None and prep != contract.preprocessing:
        raise ConfigError(
            f"{owner} got preprocessing={prep!r} and an input_contract with {contract.preprocessing!r}; "
            "pass the input_contract alone."
        )
    return contract
