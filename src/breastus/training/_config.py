"""TrainConfig: every choice of a training run, validated when it is created."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from breastus._errors import ConfigError
from breastus._precision import PrecisionName, check_precision
from breastus.data._discovery import DEFAULT_CLASS_NAMES
from breastus.data._duplicates import DEFAULT_HASH_THRESHOLD
from breastus.models._factory import parse_model_name
from breastus.models._info import ModelInfo
from breastus.models._segmentation import MULTITASK, is_segmentation_name
from breastus.transforms._contract import InputContract
from breastus.transforms._preprocess import Preprocessing

OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["multistep", "cosine", "onecycle", "none"]
AugmentationName = Literal["default", "scanner"]
AmpDtypeName = Literal["auto", "bfloat16", "float16"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run. Defaults are the original BUSI recipe.

    The original project fine-tuned torchvision ResNet-18 with initial learning
    rate 0.001, a MultiStep schedule, batch size 32 and cross-entropy loss; those
    are the defaults here. Values are validated in ``__post_init__``: an invalid
    value raises :class:`~breastus.ConfigError` when the config is created.

    Parameters
    ----------
    model : str, default="resnet18"
        Any name :func:`~breastus.create_model` accepts.
    pretrained : str or None, default="imagenet"
        ``"imagenet"``, ``"none"``/``None`` or a weights file path.
    image_size : int, default=224
        Square input side in pixels.
    epochs : int, default=20
    batch_size : int, default=32
    lr : float, default=1e-3
        Initial (for ``onecycle``: peak) learning rate.
    optimizer : {"adam", "adamw", "sgd"}, default="adam"
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=0.0
    scheduler : {"multistep", "cosine", "onecycle", "none"}, default="multistep"
    milestones : tuple of int, optional
        MultiStep epochs at which the rate is multiplied by ``gamma``; default at
        50 % and 75 % of ``epochs``.
    gamma : float, default=0.1
    label_smoothing : float, default=0.0
    class_weights : "balanced", tuple of float or None, default=None
        Cross-entropy class weights; ``"balanced"`` uses n_samples / (n_classes · count).
    early_stopping_patience : int, optional
        Stop after this many epochs without a better validation macro-F1.
    seed : int, default=0
        Seeds initialisation, shuffling, augmentation and the data split.
    device : str, default="auto"
        ``"auto"`` (CUDA → MPS → CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
    amp : bool, default=True
        Mixed precision on CUDA; ignored elsewhere.
    amp_dtype : {"auto", "bfloat16", "float16"}, default="auto"
        Mixed-precision type: ``"auto"`` takes bfloat16 where the GPU supports it,
        else float16; float16 trains with a gradient scaler.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        Precision on the CPU: ``"auto"`` trains and validates under bfloat16
        autocast where the CPU computes bfloat16 natively (AVX-512 BF16, AMX; see
        :func:`breastus.has_fast_bf16`) and in float32 elsewhere; ``"bf16"``
        forces autocast (slow where it is emulated), ``"fp32"`` turns it off.
        Master weights, checkpoints and probabilities stay float32. On CUDA
        ``amp`` and ``amp_dtype`` decide instead. The history records which ran.
    progressive_resize : tuple of (int, int), optional
        Progressive resizing, as ``((epoch, size), ...)`` steps: from ``epoch`` on
        (1-based), train at ``size`` px, e.g. ``((1, 128), (4, 224))`` trains
        epochs 1-3 at 128 px and the rest at 224 px. Epochs before the first step
        train at ``image_size``. Epochs must increase, sizes must not decrease and
        stay within [8, ``image_size``]. Validation, checkpoints and prediction
        always use ``image_size``; cached images are kept at ``image_size`` and
        downsampled on the fly (see :meth:`train_size`).
    num_workers : int, default=0
        DataLoader worker processes (0 suits small CPUs with the image cache on).
    cache_images : bool, default=True
        Decode and resize each image once (see :class:`~breastus.data.ImageCache`).
    channels_last : bool, default=True
        Use the channels-last memory format (faster convolutions on CPU and GPU).
    cache_dir : str, optional
        Also keep the decoded images on disk in this folder, keyed by file content
        (see :class:`~breastus.data.ImageCache`), for later runs, folds and ranks.
    batch_augment : bool, default=False
        Augment whole batches on the training device with
        :class:`~breastus.transforms.BatchAugment` instead of image by image on the
        CPU; needs ``cache_images`` and ``augmentation="default"``.
    compile : bool, default=False
        Train through :func:`torch.compile` (slow first steps, faster later ones).
    class_names : tuple of str, default=("benign", "malignant", "normal")
    val_size, test_size : float, default=0.1, 0.2
        Fractions held out by :func:`~breastus.train_and_evaluate`.
    group_duplicates : bool, default=True
        Keep exact and near-duplicate images in one part of every split.
    duplicate_threshold : int, default=6
        Perceptual-hash distance for near-duplicates (see :func:`~breastus.data.duplicate_groups`).
    progress : bool, default=True
        Show tqdm progress bars.
    preprocessing : Preprocessing, default=Preprocessing()
        Field-of-view crop, intensity standardisation and resize mode; recorded in
        the checkpoint and applied by the :class:`~breastus.Predictor`. A dict of
        its fields is accepted too.
    augmentation : {"default", "scanner"}, default="default"
        Training augmentation (see :func:`~breastus.train_transform`).
    seg_loss_weight : float, default=1.0
        Multi-task models (``unet/<encoder>``) only: the loss is
        cross-entropy(class) + ``seg_loss_weight`` · (Dice + BCE)(lesion mask).
        0 trains the classification head alone.
    lesion_min_normal_recall : float, default=0.85
        Multi-task models only: after training, the lesion threshold is calibrated
        on the validation split to keep this share of the normal images normal
        (:func:`breastus._lesion_decision.calibrate_lesion_threshold`).

    """

    model: str = "resnet18"
    pretrained: str | None = "imagenet"
    image_size: int = 224
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: OptimizerName = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: SchedulerName = "multistep"
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.1
    label_smoothing: float = 0.0
    class_weights: str | tuple[float, ...] | None = None
    early_stopping_patience: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: AmpDtypeName = "auto"
    precision: PrecisionName = "auto"
    progressive_resize: tuple[tuple[int, int], ...] | None = None
    num_workers: int = 0
    cache_images: bool = True
    channels_last: bool = True
    cache_dir: str | None = None
    batch_augment: bool = False
    compile: bool = False
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    val_size: float = 0.1
    test_size: float = 0.2
    group_duplicates: bool = True
    duplicate_threshold: int = DEFAULT_HASH_THRESHOLD
    progress: bool = True
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augmentation: AugmentationName = "default"
    seg_loss_weight: float = 1.0
    lesion_min_normal_recall: float = 0.85

    def __post_init__(self) -> None:
        def fail(name: str, allowed: str) -> None:
            raise ConfigError(
                f"The {name!r} parameter of TrainConfig must be {allowed}. Got {getattr(self, name)!r} instead."
            )

        def positive_int(name: str, minimum: int = 1) -> None:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                fail(name, f"an int >= {minimum}")

        if not isinstance(self.model, str):
            fail("model", "a model name such as 'resnet18' or 'timm/resnet50'")
        try:
            parse_model_name(self.model)  # a typo fails here, not after the data has been read
        except ConfigError as exc:
            raise ConfigError(f"The 'model' parameter of TrainConfig is invalid: {exc}") from exc
        positive_int("epochs")
        positive_int("batch_size")
        positive_int("image_size", 8)
        positive_int("num_workers", 0)
        positive_int("duplicate_threshold", -1)
        if self.task != "classification" and self.image_size % 32:
            raise ConfigError(
                f"The 'image_size' parameter of TrainConfig must be divisible by 32 for the multi-task model "
                f"{self.model!r} (its U-Net halves the input five times). Got {self.image_size!r} instead; "
                f"use {max(32, round(self.image_size / 32) * 32)}."
            )
        if self.task != "classification" and self.batch_augment:
            raise ConfigError(
                f"batch_augment=True augments images only and cannot move lesion masks; the multi-task model "
                f"{self.model!r} needs batch_augment=False."
            )
        if not (isinstance(self.seg_loss_weight, (int, float)) and self.seg_loss_weight >= 0):
            fail("seg_loss_weight", "a float >= 0")
        if not (isinstance(self.lesion_min_normal_recall, (int, float)) and 0 < self.lesion_min_normal_recall <= 1):
            fail("lesion_min_normal_recall", "a float in the range (0, 1]")
        if isinstance(self.preprocessing, dict):
            object.__setattr__(self, "preprocessing", Preprocessing.from_dict(self.preprocessing))
        if not isinstance(self.preprocessing, Preprocessing):
            fail("preprocessing", "a Preprocessing or a dict of its fields")
        if self.amp_dtype not in ("auto", "bfloat16", "float16"):
            fail("amp_dtype", "one of 'auto', 'bfloat16', 'float16'")
        check_precision(self.precision, "TrainConfig")
        self._check_progressive_resize()
        if self.augmentation not in ("default", "scanner"):
            fail("augmentation", "'default' or 'scanner'")
        if self.batch_augment and not (self.cache_images and self.augmentation == "default"):
            raise ConfigError(
                "batch_augment=True needs cache_images=True and augmentation='default'. Got "
                f"cache_images={self.cache_images!r}, augmentation={self.augmentation!r}; "
                "set batch_augment=False to augment image by image."
            )
        if not isinstance(self.seed, int):
            fail("seed", "an int")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            fail("lr", "a float in the range (0, inf)")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            fail("optimizer", "one of 'adam', 'adamw', 'sgd'")
        if self.scheduler not in ("multistep", "cosine", "onecycle", "none"):
            fail("scheduler", "one of 'multistep', 'cosine', 'onecycle', 'none'")
        if not self.weight_decay >= 0:
            fail("weight_decay", "a float >= 0")
        if not 0 <= self.momentum < 1:
            fail("momentum", "a float in the range [0, 1)")
        if not 0 < self.gamma <= 1:
            fail("gamma", "a float in the range (0, 1]")
        if not 0 <= self.label_smoothing < 1:
            fail("label_smoothing", "a float in the range [0, 1)")
        if self.milestones is not None and (
            not all(isinstance(m, int) and m > 0 for m in self.milestones)
            or list(self.milestones) != sorted(self.milestones)
        ):
            fail("milestones", "an increasing tuple of positive ints")
        if self.early_stopping_patience is not None and (
            not isinstance(self.early_stopping_patience, int) or self.early_stopping_patience < 1
        ):
            fail("early_stopping_patience", "None or an int >= 1")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            fail("class_names", "a tuple of at least 2 unique names")
        if isinstance(self.class_weights, str):
            if self.class_weights != "balanced":
                fail("class_weights", "None, 'balanced' or one positive float per class")
        elif self.class_weights is not None and (
            len(self.class_weights) != len(self.class_names) or any(w <= 0 for w in self.class_weights)
        ):
            fail("class_weights", f"None, 'balanced' or {len(self.class_names)} positive floats")
        if not 0 < self.test_size <= 0.5:
            fail("test_size", "a float in the range (0, 0.5]")
        if not 0 < self.val_size <= 0.5:
            fail("val_size", "a float in the range (0, 0.5]")

    def _check_progressive_resize(self) -> None:
        steps = self.progressive_resize
        if steps is None:
            return
        how = (
            "None or increasing ((epoch, size), ...) steps with epochs >= 1 and sizes in [8, image_size], "
            "e.g. ((1, 128), (4, 176))"
        )
        try:
            pairs = tuple((e, s) for e, s in steps)
        except (TypeError, ValueError):
            pairs = ()
        valid = all(isinstance(v, int) and not isinstance(v, bool) for pair in pairs for v in pair)
        epochs = [e for e, _ in pairs]
        sizes = [s for _, s in pairs]
        if (
            not valid
            or not pairs
            or epochs != sorted(set(epochs))
            or epochs[0] < 1
            or sizes != sorted(sizes)
            or sizes[0] < 8
            or sizes[-1] > self.image_size
        ):
            raise ConfigError(
                f"The 'progressive_resize' parameter of TrainConfig must be {how} (image_size={self.image_size}). "
                f"Got {steps!r} instead."
            )
        object.__setattr__(self, "progressive_resize", pairs)

    def train_size(self, epoch: int) -> int:
        """Training image side of ``epoch`` (1-based): ``image_size``, or a ``progressive_resize`` step's size."""
        size = self.image_size
        for start, step_size in self.progressive_resize or ():
            if epoch >= start:
                size = step_size
        return size

    @property
    def task(self) -> str:
        """``"segmentation+classification"`` for a ``unet/<encoder>`` model, else ``"classification"``."""
        return MULTITASK if is_segmentation_name(self.model) else "classification"

    @property
    def resolved_milestones(self) -> list[int]:
        """MultiStep milestones, defaulting to 50 % and 75 % of the epochs."""
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, (3 * self.epochs) // 4)})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), for checkpoints and JSON."""
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`~breastus.ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"Unknown TrainConfig field(s) {sorted(unknown)}; known fields are {sorted(known)}.")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if values.get("progressive_resize") is not None:
            values["progressive_resize"] = tuple(tuple(step) for step in values["progressive_resize"])
        return cls(**values)  # type: ignore[arg-type]

    def input_contract(self, model_info: ModelInfo) -> InputContract:
        """The input contract of a model trained with this config: the one place it is built.

        Parameters
        ----------
        model_info : ModelInfo
            The model's info; its ``mean`` and ``std`` normalise the input.

        Returns
        -------
        InputContract
            ``image_size`` and ``preprocessing`` of this config, the model's normalisation.

        """
        return InputContract(self.image_size, model_info.mean, model_info.std, self.preprocessing)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and validated)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})
