"""The Predictor: classify ultrasound images with a trained breastus checkpoint.

This module holds the :class:`Predictor` itself: construction, preprocessing, and the
public ``predict*``/``explain`` methods with their documentation (about half its
lines, which is why it is over 450). The work behind them lives beside it:
:mod:`~breastus.prediction._prediction` (the :class:`Prediction` result),
:mod:`~breastus.prediction._loading` (building from a checkpoint or an export),
:mod:`~breastus.prediction._forward` (running the model: precision, mirroring, threads),
:mod:`~breastus.prediction._multitask` (lesion masks, the decision rule, crop fusion),
and :mod:`breastus.explain` (heatmaps).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from breastus._device import resolve_device
from breastus._errors import ConfigError, DataError
from breastus._precision import cpu_autocast_dtype, precision_label
from breastus.data._discovery import iter_images as iter_images
from breastus.data._inputs import ImageInput as ImageInput
from breastus.data._inputs import as_grayscale
from breastus.models._info import ModelInfo
from breastus.prediction import _loading
from breastus.prediction._forward import forward_batch, model_outputs, single_torch_thread
from breastus.prediction._lesion import check_spacing
from breastus.prediction._multitask import (
    Item,
    check_lesion_settings,
    lesion_predictions,
    prepare,
    spacing_per_image,
    with_crop_classifier,
)
from breastus.prediction._prediction import Prediction as Prediction
from breastus.prediction._prediction import Spacing as Spacing
from breastus.transforms._contract import InputContract, resolve_contract
from breastus.transforms._preprocess import Preprocessing

if TYPE_CHECKING:
    from breastus.models._checkpoint import Checkpoint

logger = logging.getLogger(__name__)

_as_grayscale = as_grayscale  # image-input coercion lives in breastus.data._inputs; kept importable from here


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
    decision : {"argmax", "lesion"} or None, default=None
        How the label is chosen. ``"argmax"``: the most probable class.
        ``"lesion"`` (multi-task models with a calibrated ``lesion_threshold``):
        ``"normal"`` exactly when no lesion is found, otherwise benign vs
        malignant (see :func:`breastus.prediction.decide`). ``None``: ``"lesion"``
        when the model is multi-task and a threshold is known, else ``"argmax"``.
    lesion_threshold : float or None, default=None
        The calibrated lesion threshold (``Checkpoint.lesion_threshold``).
    mask_cut : float, default=0.5
        Pixels whose lesion probability is at least this are in the mask.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        CPU arithmetic of an eager PyTorch model, chosen as ``TrainConfig.precision``
        is: bfloat16 autocast (with channels_last) where the CPU computes bfloat16
        natively, float32 elsewhere. Probabilities are computed from float32-cast
        logits in float64 whichever runs. TorchScript and ONNX models keep float32.
    input_contract : InputContract, optional
        What the model expects of its input; :meth:`from_checkpoint` and
        :meth:`from_exported` pass the file's. Without it, one is made from
        ``image_size``, ``preprocessing`` and ``model_info``'s normalisation;
        with it, ``image_size`` (and ``preprocessing``, if given) must agree.

    Attributes
    ----------
    input_contract : InputContract
        Size, normalisation and preprocessing of the model input; :attr:`transform`
        is its :meth:`~breastus.transforms.InputContract.eval_transform`, and
        :attr:`image_size` and :attr:`preprocessing` are read from it.
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
        decision: str | None = None,
        lesion_threshold: float | None = None,
        mask_cut: float = 0.5,
        precision: str = "auto",
        input_contract: InputContract | None = None,
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
        self.input_contract = resolve_contract(
            input_contract, image_size, preprocessing, model_info.mean, model_info.std, "Predictor"
        )
        self.tta = tta
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.transform = self.input_contract.eval_transform()
        # A model run outside PyTorch (ONNX Runtime) gets its batches built without PyTorch's
        # thread pool, whose spinning threads would otherwise compete with the runtime's own.
        self._host_batches = bool(getattr(model, "host_batches", False))
        self.multitask = model_info.is_multitask
        self.decision, self.lesion_threshold, self.mask_cut = check_lesion_settings(
            self.multitask, model_info.name, decision, lesion_threshold, mask_cut
        )
        self.crop_classifier: Predictor | None = None
        self.crop_weight = 0.5
        self.crop_margin = 0.25
        # multi-task inputs: the field-of-view crop is done here (its box is needed to place the mask)
        self._uncropped_transform = self.input_contract.without_crop().eval_transform()
        eager = not self._host_batches and not isinstance(model, torch.jit.ScriptModule)
        dtype = cpu_autocast_dtype(precision)
        self._autocast_dtype = dtype if eager and self.device.type == "cpu" else None
        if self._autocast_dtype is not None:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.precision = precision_label(self._autocast_dtype)

    @property
    def image_size(self) -> int:
        """Square model input side (``input_contract.image_size``)."""
        return self.input_contract.image_size

    @property
    def preprocessing(self) -> Preprocessing:
        """The preprocessing of the model input (``input_contract.preprocessing``)."""
        return self.input_contract.preprocessing

    def _torch_threads(self) -> AbstractContextManager[None]:
        """One PyTorch thread while preparing inputs for a model that runs outside PyTorch."""
        return single_torch_thread() if self._host_batches else nullcontext()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: int = 32,
        backend: str = "torch",
        decision: str | None = None,
        precision: str = "auto",
    ) -> Predictor:
        """Load a breastus checkpoint (``best.pt``, ``last.pt`` or a run folder).

        ``backend`` runs the model eagerly (``"torch"``), traced
        (``"torchscript"``) or exported to ONNX in memory and run by ONNX Runtime
        (``"onnxruntime"``, needs ``breastus[onnx]``); probabilities agree to about
        1e-6. :meth:`from_exported` loads a file written by ``breastus export``.
        ``decision``: see :class:`Predictor` (the checkpoint's ``lesion_threshold`` is used).
        ``precision``: see :class:`Predictor` (eager ``"torch"`` backend only).

        Raises
        ------
        CheckpointError
            If the file is missing, unsafe, damaged or from an incompatible version.
        ConfigError
            If ``backend`` is unknown or its package is missing.

        """
        return _loading.from_checkpoint(cls, path, device, tta, batch_size, backend, decision, precision)

    @classmethod
    def from_exported(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: int = 32,
        decision: str | None = None,
    ) -> Predictor:
        """Load an ONNX or TorchScript file written by ``breastus export`` (see :mod:`breastus.export`).

        ONNX files run with ONNX Runtime. Classes, input size, normalisation,
        preprocessing, temperature, task and lesion threshold come from the
        file's metadata; a multi-task export gives the same lesion fields as the
        checkpoint.

        Raises
        ------
        CheckpointError
            If the file is missing, of neither format, or lacks breastus metadata.

        """
        return _loading.from_exported(cls, path, device, tta, batch_size, decision)

    @classmethod
    def from_loaded(
        cls,
        checkpoint: Checkpoint,
        device: str | torch.device = "auto",
        tta: bool = False,
        batch_size: int = 32,
        backend: str = "torch",
        decision: str | None = None,
        precision: str = "auto",
    ) -> Predictor:
        """Build a Predictor from an already loaded :class:`~breastus.models.Checkpoint` (``backend``: see :meth:`from_checkpoint`)."""
        return _loading.from_loaded(cls, checkpoint, device, tta, batch_size, backend, decision, precision)

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """The normalised ``(3, S, S)`` float tensor the model sees for ``image``."""
        gray, _ = _as_grayscale(image)
        tensor: torch.Tensor = self.transform(TF.pil_to_tensor(gray))
        return tensor

    def _prepare(self, image: ImageInput, spacing: Spacing | None = None) -> Item:
        """Decode and preprocess one input, remembering (for multi-task models) where it went."""
        return prepare(self, image, spacing)

    def predict_proba(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities, ``(len(images), n_classes)``, rows summing to 1.

        The rows are :attr:`Prediction.probabilities` (fused with the crop
        classifier's for a :meth:`with_crop_classifier` predictor).
        """
        outputs = []
        for i in range(0, len(images), self.batch_size):
            with self._torch_threads():
                items = [self._prepare(x) for x in images[i : i + self.batch_size]]
            if self.multitask:
                predictions = self._predict_items(items)
                outputs.append(np.array([[p.probabilities[c] for c in self.class_names] for p in predictions]))
            else:
                outputs.append(self._proba_batch([item.tensor for item in items]))
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return np.concatenate(outputs)

    def _forward(self, tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities ``(N, C)`` and, for multi-task models, lesion probability maps ``(N, S, S)``."""
        return forward_batch(self, tensors)

    def _proba_batch(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        return self._forward(tensors)[0]

    def _outputs(self, batch: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Lesion logits (float32, multi-task models; else ``None``) and class logits (float64) of a batch.

        Computed under autocast, channels-last, when :attr:`precision` is bf16.
        """
        return model_outputs(self, batch)

    def _to_prediction(self, row: np.ndarray, path: str | None) -> Prediction:
        probabilities = {name: float(p) for name, p in zip(self.class_names, row, strict=True)}
        return Prediction(label=self.class_names[int(np.argmax(row))], probabilities=probabilities, path=path)

    def _predict_items(self, items: Sequence[Item]) -> list[Prediction]:
        """Predictions for prepared inputs: the lesion, the crop fusion and the decision rule."""
        rows, maps = self._forward([item.tensor for item in items])
        if maps is None:
            return [self._to_prediction(row, item.path) for row, item in zip(rows, items, strict=True)]
        return lesion_predictions(self, rows, maps, items)

    def with_crop_classifier(self, classifier: Predictor, weight: float = 0.5, margin: float = 0.25) -> Predictor:
        """Segment-then-classify: this multi-task predictor plus a classifier of lesion crops.

        For every image in which a lesion mask is predicted, the region around
        the mask's box (widened by ``margin``, exactly as
        :func:`breastus.transforms.crop_to_lesion` cuts training crops) is
        classified by ``classifier`` and the two probability vectors are fused
        by :func:`~breastus.prediction.fuse_crop_probabilities`: a
        weighted mean, ``(1 - weight) * whole + weight * crop``, over the
        classifier's classes. Images without a predicted lesion keep the
        whole-frame probabilities; "normal" is still decided by the lesion
        alone under ``decision="lesion"``.

        Parameters
        ----------
        classifier : Predictor
            A classifier trained on lesion crops (e.g. by ``benchmarks/lesion_crop.py``);
            its classes must be among this predictor's (``benign``/``malignant``
            alone is fine).
        weight : float, default=0.5
            Weight of the crop's probabilities, in [0, 1] (0.5: the mean).
        margin : float, default=0.25
            Context around the box, as a fraction of its longer side.

        Returns
        -------
        Predictor
            A new predictor sharing this one's model; this one is unchanged.

        Raises
        ------
        ConfigError
            If this predictor is not multi-task, the classes do not fit, or
            ``weight``/``margin`` are out of range.

        """
        return with_crop_classifier(self, classifier, weight, margin)

    @overload
    def predict(self, images: ImageInput, pixel_spacing_mm: Spacing | None = None) -> Prediction: ...

    @overload
    def predict(
        self,
        images: list[ImageInput] | tuple[ImageInput, ...],
        pixel_spacing_mm: Spacing | Sequence[Spacing | None] | None = None,
    ) -> list[Prediction]: ...

    def predict(
        self,
        images: ImageInput | list[ImageInput] | tuple[ImageInput, ...],
        pixel_spacing_mm: Spacing | Sequence[Spacing | None] | None = None,
    ) -> Prediction | list[Prediction]:
        """Classify one image or a list of images (and, with a multi-task model, find the lesion).

        With a multi-task model each :class:`Prediction` also holds the lesion:
        ``lesion_probability``, the boolean ``mask`` at the input's resolution (the
        model's map with the letterbox bars removed, resized back and placed in
        the field-of-view crop; pixels ``>= mask_cut`` with holes filled and
        specks under 10 % of the largest part dropped), its box and area. Under
        ``decision="lesion"`` an image without a lesion gets an empty mask and the
        mask of an image with one is cut at ``min(mask_cut, lesion_threshold)``,
        so mask and label agree.

        Parameters
        ----------
        images : path, PIL image, numpy array, or list of them
            Any PIL-readable file (PNG, JPEG, BMP, TIFF; any mode), a DICOM file
            (its first frame: :meth:`predict_frames` gives every frame), a PIL
            image of any mode, or a numpy array of shape (H, W), (H, W, 3) or (H, W, 4).
        pixel_spacing_mm : (float, float), list of them, or None, default=None
            ``(dx, dy)``, a pixel's width and height in mm: one for all images or
            one (or ``None``) per image; gives ``lesion_area_mm2``.

        Returns
        -------
        Prediction or list of Prediction
            One per input (a list for a list input).

        Raises
        ------
        DataError
            If an input cannot be read; the message names the file.
        ConfigError
            If ``pixel_spacing_mm`` is not a valid spacing or list of them.

        """
        single = not isinstance(images, (list, tuple))
        items: list[ImageInput] = list(images) if isinstance(images, (list, tuple)) else [images]
        spacings = spacing_per_image(pixel_spacing_mm, len(items))
        results: list[Prediction] = []
        for i in range(0, len(items), self.batch_size):
            with self._torch_threads():
                prepared = [
                    self._prepare(x, s) for x, s in zip(items[i : i + self.batch_size], spacings[i:], strict=False)
                ]
            results += self._predict_items(prepared)
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
        self,
        folder: str | Path,
        recursive: bool = True,
        on_error: str = "raise",
        pixel_spacing_mm: Spacing | None = None,
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
        pixel_spacing_mm : (float, float), optional
            ``(dx, dy)`` in mm for every image (multi-task models: ``lesion_area_mm2``).

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
        return self.predict_paths(iter_images(folder, recursive), on_error=on_error, pixel_spacing_mm=pixel_spacing_mm)

    def predict_frames(
        self, path: str | os.PathLike[str], frames: int | Sequence[int] | None = None
    ) -> Iterator[Prediction]:
        """Classify every frame (``frames=None``) or chosen 0-based frames of a DICOM cine loop, streaming.

        Frames are decoded one at a time and classified ``batch_size`` at a time;
        each :class:`Prediction` has its ``frame`` set. See
        :func:`breastus.prediction.predict_frames` for several files and ``on_error``.

        Raises
        ------
        DataError
            If the file or a frame cannot be read, or a frame number is out of range.

        """
        from breastus.prediction._frames import predict_frames

        return predict_frames(self, [path], frames)

    def predict_paths(
        self, paths: Iterable[Path], on_error: str = "raise", pixel_spacing_mm: Spacing | None = None
    ) -> Iterator[Prediction]:
        """Classify image files from an iterable, streaming batch by batch (lazily, like :meth:`predict_folder`)."""
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
        spacing = None if pixel_spacing_mm is None else check_spacing(pixel_spacing_mm)
        return self._stream(paths, on_error, spacing)

    def _stream(self, paths: Iterable[Path], on_error: str, spacing: Spacing | None) -> Iterator[Prediction]:
        batch: list[Item] = []
        skipped = 0
        for path in paths:
            try:
                with self._torch_threads():
                    batch.append(self._prepare(path, spacing))
            except DataError as exc:
                if on_error == "raise":
                    raise
                skipped += 1
                logger.warning("Skipping unreadable image: %s", exc)
                continue
            if len(batch) == self.batch_size:
                yield from self._predict_items(batch)
                batch = []
        if batch:
            yield from self._predict_items(batch)
        if skipped:
            logger.warning("Skipped %d unreadable image(s).", skipped)
