"""The Predictor: classify ultrasound images with a trained breastus checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from breastus._device import resolve_device
from breastus._errors import DataError
from breastus.data._dataset import is_mask_file, natural_key
from breastus.data._io import IMAGE_SUFFIXES, load_image, to_grayscale
from breastus.models._checkpoint import Checkpoint, load_checkpoint
from breastus.models._info import ModelInfo
from breastus.transforms._presets import eval_transform

logger = logging.getLogger(__name__)

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray
"""What :meth:`Predictor.predict` accepts as one image."""


@dataclass(frozen=True)
class Prediction:
    """The classification of one image.

    Attributes
    ----------
    label : str
        The most probable class.
    probabilities : dict of str to float
        Probability of each class (in the model's class order); sums to 1.
    path : str or None
        The image file, when the input was a path.

    """

    label: str
    probabilities: dict[str, float] = field(repr=False)
    path: str | None = None

    @property
    def confidence(self) -> float:
        """Probability of the predicted label."""
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON and CSV."""
        return {"path": self.path, "label": self.label, "probabilities": dict(self.probabilities)}


def _as_grayscale(image: ImageInput) -> tuple[Image.Image, str | None]:
    """Turn one input into an 8-bit grayscale PIL image (and its path, if any)."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(os.fspath(image)), os.fspath(image)
    if isinstance(image, Image.Image):
        return to_grayscale(image), None
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise DataError(
                f"A numpy image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Got {array.shape} instead."
            )
        if array.size == 0:
            raise DataError(f"A numpy image must not be empty. Got shape {array.shape}.")
        if array.dtype == np.uint8:
            pass
        elif array.dtype == np.uint16:
            array = (array / 257.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating):
            finite = np.nan_to_num(array.astype(np.float64))
            scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
            array = np.clip(finite * scale, 0, 255).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            array = np.clip(array.astype(np.int64) * (255 if array.dtype == np.bool_ else 1), 0, 255).astype(np.uint8)
        else:
            raise DataError(f"Unsupported numpy image dtype {array.dtype}; use uint8, uint16, bool or float.")
        return to_grayscale(Image.fromarray(np.ascontiguousarray(array))), None
    raise DataError(
        f"Cannot classify an object of type {type(image).__name__}; pass a file path, a PIL image, "
        "a numpy array, or a list of them."
    )


class Predictor:
    """Classify breast ultrasound images with a trained model.

    Build it with :meth:`from_checkpoint`. The preprocessing (grayscale decoding,
    resize to the training size, normalisation) and the calibration temperature
    come from the checkpoint, so predictions match what training measured.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (logits out).
    model_info : ModelInfo
    class_names : sequence of str
        Output order of ``model``.
    image_size : int
        Square input side.
    device : str or torch.device, default="auto"
    tta : bool, default=False
        Average the probabilities of each image and its horizontal mirror.
    temperature : float, default=1.0
        Logits are divided by it before the softmax (see calibration).
    batch_size : int, default=32
        Images per forward pass in :meth:`predict` lists and :meth:`predict_folder`.

    Examples
    --------
    >>> from breastus import Predictor  # doctest: +SKIP
    >>> predictor = Predictor.from_checkpoint("runs/busi/best.pt")  # doctest: +SKIP
    >>> result = predictor.predict("benign (1).png")  # doctest: +SKIP
    >>> result.label, round(sum(result.probabilities.values()), 6)  # doctest: +SKIP
    ('benign', 1.0)

    """

    def __init__(
        self,
        model: nn.Module,
        model_info: ModelInfo,
        class_names: Sequence[str],
        image_size: int,
        device: str | torch.device = "auto",
        tta: bool = False,
        temperature: float = 1.0,
        batch_size: int = 32,
    ) -> None:
        if not temperature > 0:
            raise DataError(f"temperature must be a float > 0. Got {temperature!r} instead.")
        if len(class_names) != model_info.num_classes:
            raise DataError(
                f"class_names has {len(class_names)} entries but the model has {model_info.num_classes} outputs."
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model_info = model_info
        self.class_names = tuple(class_names)
        self.image_size = int(image_size)
        self.tta = tta
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.transform = eval_transform(self.image_size, model_info.mean, model_info.std)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "auto", tta: bool = False, batch_size: int = 32
    ) -> Predictor:
        """Load a breastus checkpoint (``best.pt``, ``last.pt`` or a run folder).

        Raises
        ------
        CheckpointError
            If the file is missing, unsafe, damaged or from an incompatible version.

        """
        checkpoint = load_checkpoint(path)
        return cls.from_loaded(checkpoint, device=device, tta=tta, batch_size=batch_size)

    @classmethod
    def from_loaded(
        cls, checkpoint: Checkpoint, device: str | torch.device = "auto", tta: bool = False, batch_size: int = 32
    ) -> Predictor:
        """Build a Predictor from an already loaded :class:`~breastus.models.Checkpoint`."""
        return cls(
            checkpoint.build_model(),
            checkpoint.model_info,
            checkpoint.class_names,
            checkpoint.image_size,
            device=device,
            tta=tta,
            temperature=checkpoint.temperature,
            batch_size=batch_size,
        )

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """The normalised ``(3, S, S)`` float tensor the model sees for ``image``."""
        gray, _ = _as_grayscale(image)
        tensor: torch.Tensor = self.transform(TF.pil_to_tensor(gray))
        return tensor

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities, ``(len(images), n_classes)``, rows summing to 1."""
        outputs = [
            self._proba_batch([self.preprocess(x) for x in images[i : i + self.batch_size]])
            for i in range(0, len(images), self.batch_size)
        ]
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return np.concatenate(outputs)

    def _proba_batch(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(list(tensors)).to(self.device)
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(batch).double() / self.temperature, dim=1)
            if self.tta:
                mirrored = self.model(torch.flip(batch, dims=[3])).double()
                probabilities = (probabilities + torch.softmax(mirrored / self.temperature, dim=1)) / 2
        return probabilities.cpu().numpy()

    def _to_prediction(self, row: np.ndarray, path: str | None) -> Prediction:
        probabilities = {name: float(p) for name, p in zip(self.class_names, row, strict=True)}
        return Prediction(label=self.class_names[int(np.argmax(row))], probabilities=probabilities, path=path)

    @overload
    def predict(self, images: ImageInput) -> Prediction: ...

    @overload
    def predict(self, images: list[ImageInput] | tuple[ImageInput, ...]) -> list[Prediction]: ...

    def predict(self, images: ImageInput | list[ImageInput] | tuple[ImageInput, ...]) -> Prediction | list[Prediction]:
        """Classify one image or a list of images.

        Parameters
        ----------
        images : path, PIL image, numpy array, or list of them
            Any PIL-readable file (PNG, JPEG, BMP, TIFF; any mode), a PIL image of
            any mode, or a numpy array of shape (H, W), (H, W, 3) or (H, W, 4).

        Returns
        -------
        Prediction or list of Prediction
            One per input (a list for a list input).

        Raises
        ------
        DataError
            If an input cannot be read; the message names the file.

        """
        single = not isinstance(images, (list, tuple))
        items: list[ImageInput] = list(images) if isinstance(images, (list, tuple)) else [images]
        results: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            decoded = [_as_grayscale(x) for x in chunk]
            tensors = [self.transform(TF.pil_to_tensor(gray)) for gray, _ in decoded]
            rows = self._proba_batch(tensors)
            results += [self._to_prediction(row, path) for row, (_, path) in zip(rows, decoded, strict=True)]
        return results[0] if single else results

    def predict_folder(
        self, folder: str | Path, recursive: bool = True, on_error: str = "raise"
    ) -> Iterator[Prediction]:
        """Classify every image under ``folder``, streaming results batch by batch.

        Files are read ``batch_size`` at a time, so memory stays constant however
        many images there are. Lesion masks (``*_mask*.png``) are skipped.

        Parameters
        ----------
        folder : str or pathlib.Path
        recursive : bool, default=True
            Also descend into sub-folders.
        on_error : {"raise", "skip"}, default="raise"
            ``"skip"`` leaves out unreadable files (logged) instead of raising.

        Yields
        ------
        Prediction
            In natural path order (``img2`` before ``img10``).

        """
        yield from self.predict_paths(iter_images(folder, recursive), on_error=on_error)

    def predict_paths(self, paths: Iterable[Path], on_error: str = "raise") -> Iterator[Prediction]:
        """Classify image files from an iterable, streaming batch by batch."""
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
        batch: list[tuple[torch.Tensor, str]] = []
        for path in paths:
            try:
                batch.append((self.preprocess(path), os.fspath(path)))
            except DataError:
                if on_error == "raise":
                    raise
                logger.warning("Skipping unreadable image %s", path)
                continue
            if len(batch) == self.batch_size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)

    def _flush(self, batch: list[tuple[torch.Tensor, str]]) -> Iterator[Prediction]:
        rows = self._proba_batch([t for t, _ in batch])
        for row, (_, path) in zip(rows, batch, strict=True):
            yield self._to_prediction(row, path)


def iter_images(folder: str | Path, recursive: bool = True) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order, lesion masks and hidden files excluded.

    Raises
    ------
    DataError
        If ``folder`` does not exist or is not a folder.

    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"Folder {str(root)!r} does not exist or is not a folder.")
    pattern = "**/*" if recursive else "*"
    for path in sorted(root.glob(pattern), key=lambda p: natural_key(p.relative_to(root))):
        if (
            path.is_file()
            and path.suffix.lower() in IMAGE_SUFFIXES
            and not is_mask_file(path)
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        ):
            yield path
