"""The Predictor: classify ultrasound images with a trained breastus checkpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import functional as TF

from breastus._device import resolve_device
from breastus._errors import CheckpointError, ConfigError, DataError
from breastus._precision import autocast, cpu_autocast_dtype, precision_label
from breastus.data._dataset import is_mask_file, natural_key
from breastus.data._io import IMAGE_SUFFIXES, load_image, to_grayscale
from breastus.models._checkpoint import Checkpoint, load_checkpoint
from breastus.models._info import ModelInfo
from breastus.transforms._preprocess import Preprocessing
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
            values = array.astype(np.float64)
            # the [0, 1] or [0, 255] range is judged on finite values: one inf must not blacken the image
            scale = 255.0 if values[np.isfinite(values)].max(initial=0.0) <= 1.0 else 1.0
            finite = np.nan_to_num(values, nan=0.0, posinf=255.0 / scale, neginf=0.0)
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


def _recorded_preprocessing(recorded: dict[str, Any] | None, what: str) -> Preprocessing:
    """Rebuild the :class:`Preprocessing` stored in a checkpoint or export, as a CheckpointError if unusable."""
    try:
        return Preprocessing.from_dict(recorded)
    except ConfigError as exc:
        raise CheckpointError(f"{what} cannot be used: {exc}") from exc


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
    preprocessing : Preprocessing, optional
        Field-of-view crop, intensity standardisation and resize mode (default
        ``Preprocessing()``); :meth:`from_checkpoint` uses the checkpoint's.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        CPU arithmetic of an eager PyTorch model, chosen as ``TrainConfig.precision``
        is: bfloat16 autocast (with channels_last) where the CPU computes bfloat16
        natively, float32 elsewhere. Probabilities are computed from float32-cast
        logits in float64 whichever runs. TorchScript and ONNX models keep float32.

    Attributes
    ----------
    precision : str
        What runs: ``"fp32"`` or ``"bf16"``.

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
        preprocessing: Preprocessing | None = None,
        precision: str = "auto",
    ) -> None:
        if not temperature > 0:
            raise ConfigError(f"temperature must be a float > 0. Got {temperature!r} instead.")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1. Got {batch_size!r} instead.")
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
        self.preprocessing = Preprocessing() if preprocessing is None else preprocessing
        self.transform = eval_transform(self.image_size, model_info.mean, model_info.std, self.preprocessing)
        # A model run outside PyTorch (ONNX Runtime) gets its batches built without PyTorch's
        # thread pool, whose spinning threads would otherwise compete with the runtime's own.
        self._host_batches = bool(getattr(model, "host_batches", False))
        eager = not self._host_batches and not isinstance(model, torch.jit.ScriptModule)
        dtype = cpu_autocast_dtype(precision)
        self._autocast_dtype = dtype if eager and self.device.type == "cpu" else None
        if self._autocast_dtype is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.precision = precision_label(self._autocast_dtype)

    def _torch_threads(self) -> AbstractContextManager[None]:
        """One PyTorch thread while preparing inputs for a model that runs outside PyTorch."""
        return _single_torch_thread() if self._host_batches else nullcontext()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: int = 32,
        backend: str = "torch",
        precision: str = "auto",
    ) -> Predictor:
        """Load a breastus checkpoint (``best.pt``, ``last.pt`` or a run folder).

        ``backend`` runs the model eagerly (``"torch"``), traced
        (``"torchscript"``) or exported to ONNX in memory and run by ONNX Runtime
        (``"onnxruntime"``, needs ``breastus[onnx]``); probabilities agree to about
        1e-6. :meth:`from_exported` loads a file written by ``breastus export``.
        ``precision``: see :class:`Predictor` (eager ``"torch"`` backend only).

        Raises
        ------
        CheckpointError
            If the file is missing, unsafe, damaged or from an incompatible version.
        ConfigError
            If ``backend`` is unknown or its package is missing.

        """
        checkpoint = load_checkpoint(path)
        try:
            return cls.from_loaded(
                checkpoint, device=device, tta=tta, batch_size=batch_size, backend=backend, precision=precision
            )
        except CheckpointError as exc:  # the model is rebuilt here: name the file it came from
            raise CheckpointError(f"Checkpoint {str(path)!r}: {exc}") from exc

    @classmethod
    def from_exported(
        cls, path: str | Path, device: str | torch.device = "auto", tta: bool = False, batch_size: int = 32
    ) -> Predictor:
        """Load an ONNX or TorchScript file written by ``breastus export`` (see :mod:`breastus.export`).

        ONNX files run with ONNX Runtime. Classes, input size, normalisation,
        preprocessing and temperature come from the file's metadata.

        Raises
        ------
        CheckpointError
            If the file is missing, of neither format, or lacks breastus metadata.

        """
        from breastus.export._api import load_exported

        module, meta = load_exported(path, resolve_device(device))
        preprocessing = _recorded_preprocessing(meta.preprocessing, f"The preprocessing recorded in {str(path)!r}")
        return cls(
            module,
            meta.model_info,
            meta.class_names,
            meta.image_size,
            device=device,
            tta=tta,
            temperature=meta.temperature,
            batch_size=batch_size,
            preprocessing=preprocessing,
        )

    @classmethod
    def from_loaded(
        cls,
        checkpoint: Checkpoint,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: int = 32,
        backend: str = "torch",
        precision: str = "auto",
    ) -> Predictor:
        """Build a Predictor from an already loaded :class:`~breastus.models.Checkpoint` (``backend``: see :meth:`from_checkpoint`)."""
        from breastus.export._api import backend_model

        preprocessing = _recorded_preprocessing(checkpoint.preprocessing, "The checkpoint's preprocessing")
        return cls(
            backend_model(checkpoint, backend, resolve_device(device)),
            checkpoint.model_info,
            checkpoint.class_names,
            checkpoint.image_size,
            device=device,
            tta=tta,
            temperature=checkpoint.temperature,
            batch_size=batch_size,
            preprocessing=preprocessing,
            precision=precision,
        )

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """The normalised ``(3, S, S)`` float tensor the model sees for ``image``."""
        gray, _ = _as_grayscale(image)
        tensor: torch.Tensor = self.transform(TF.pil_to_tensor(gray))
        return tensor

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities, ``(len(images), n_classes)``, rows summing to 1."""
        outputs = []
        for i in range(0, len(images), self.batch_size):
            with self._torch_threads():
                tensors = [self.preprocess(x) for x in images[i : i + self.batch_size]]
            outputs.append(self._proba_batch(tensors))
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return np.concatenate(outputs)

    def _proba_batch(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        if self._host_batches:
            batch = torch.from_numpy(np.stack([t.numpy() for t in tensors]))
        else:
            batch = torch.stack(list(tensors)).to(self.device)
        with torch.inference_mode():
            probabilities = torch.softmax(self._logits(batch) / self.temperature, dim=1)
            if self.tta:
                mirrored = self._logits(torch.flip(batch, dims=[3]))
                probabilities = (probabilities + torch.softmax(mirrored / self.temperature, dim=1)) / 2
        return probabilities.cpu().numpy()

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's logits as float64 (computed under autocast, channels-last, when :attr:`precision` is bf16)."""
        if self._autocast_dtype is not None:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self._autocast_dtype):
            logits: torch.Tensor = self.model(batch)
        return logits.double()

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
        paths = [os.fspath(x) if isinstance(x, (str, os.PathLike)) else None for x in items]
        rows = self.predict_proba(items)
        results = [self._to_prediction(row, path) for row, path in zip(rows, paths, strict=True)]
        return results[0] if single else results

    @overload
    def explain(
        self,
        images: ImageInput,
        target: int | str | None = None,
        method: str = "gradcam",
        layer: str | nn.Module | None = None,
    ) -> np.ndarray: ...

    @overload
    def explain(
        self,
        images: list[ImageInput] | tuple[ImageInput, ...],
        target: int | str | Sequence[int | str] | None = None,
        method: str = "gradcam",
        layer: str | nn.Module | None = None,
    ) -> list[np.ndarray]: ...

    def explain(
        self,
        images: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
        target: int | str | Sequence[int | str] | None = None,
        method: str = "gradcam",
        layer: str | nn.Module | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Class-activation heatmap of one image or a list of images (needs ``breastus[explain]``).

        Parameters
        ----------
        images : path, PIL image, numpy array, or list of them
            The same inputs as :meth:`predict`.
        target : int, str, list of them, or None, default=None
            Class to explain, by name or index: one for all images or one per
            image. ``None``: each image's predicted class (as :meth:`predict` gives it).
        method : {"gradcam", "gradcam++", "layercam", "scorecam"}, default="gradcam"
            See :data:`breastus.explain.CAM_METHODS`.
        layer : str, torch.nn.Module or None, default=None
            Target layer as a dotted module path (``"layer4"``); ``None`` picks it
            automatically (see :func:`breastus.explain.find_target_layer`).

        Returns
        -------
        numpy.ndarray or list of numpy.ndarray
            ``float32`` heatmap(s) in [0, 1] with each input image's height and width.

        Raises
        ------
        ConfigError
            Unknown method, layer or target class.
        DataError
            If an input cannot be read.

        Examples
        --------
        >>> heatmap = predictor.explain("benign (1).png", method="gradcam++")  # doctest: +SKIP
        >>> heatmap.shape, float(heatmap.max())  # doctest: +SKIP
        ((471, 562), 1.0)

        """
        from breastus.explain._cam import explain_images

        single = not isinstance(images, (list, tuple))
        items: list[ImageInput] = list(images) if isinstance(images, (list, tuple)) else [images]
        heatmaps = explain_images(self, items, target, method, layer)
        return heatmaps[0] if single else heatmaps

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

        Returns
        -------
        iterator of Prediction
            In natural path order (``img2`` before ``img10``), computed lazily
            batch by batch as the iterator is consumed.

        Raises
        ------
        DataError
            Right away if ``folder`` is not a folder or ``on_error`` is invalid;
            while iterating if a file cannot be read and ``on_error="raise"``.

        """
        if not Path(folder).is_dir():
            raise DataError(f"Folder {str(folder)!r} does not exist or is not a folder.")
        return self.predict_paths(iter_images(folder, recursive), on_error=on_error)

    def predict_paths(self, paths: Iterable[Path], on_error: str = "raise") -> Iterator[Prediction]:
        """Classify image files from an iterable, streaming batch by batch (lazily, like :meth:`predict_folder`)."""
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
        return self._stream(paths, on_error)

    def _stream(self, paths: Iterable[Path], on_error: str) -> Iterator[Prediction]:
        batch: list[tuple[torch.Tensor, str]] = []
        skipped = 0
        for path in paths:
            try:
                with self._torch_threads():
                    tensor = self.preprocess(path)
                batch.append((tensor, os.fspath(path)))
            except DataError as exc:
                if on_error == "raise":
                    raise
                skipped += 1
                logger.warning("Skipping unreadable image: %s", exc)
                continue
            if len(batch) == self.batch_size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)
        if skipped:
            logger.warning("Skipped %d unreadable image(s).", skipped)

    def _flush(self, batch: list[tuple[torch.Tensor, str]]) -> Iterator[Prediction]:
        rows = self._proba_batch([t for t, _ in batch])
        for row, (_, path) in zip(rows, batch, strict=True):
            yield self._to_prediction(row, path)


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run PyTorch on one intra-op thread inside the block (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
