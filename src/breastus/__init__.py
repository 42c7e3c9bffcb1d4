"""breastus: classify breast ultrasound images as normal, benign or malignant.

Train and honestly evaluate ResNet-family CNNs on BUSI-style data, then use the
trained model anywhere with :class:`Predictor`::

    from breastus import Predictor
    predictor = Predictor.from_checkpoint("runs/busi/best.pt")
    print(predictor.predict("scan.png").label)

Everything listed in ``__all__`` is public and stable; modules whose names start
with an underscore are private.

Where each piece lives
----------------------
The subpackages follow the data flow, each importing only from those below it
(checked by the import-linter contracts in ``pyproject.toml``, run by CI):

- :mod:`breastus.cli` — the ``breastus`` command, one module per sub-command;
  nothing else imports it.
- :mod:`breastus.reporting` (model cards: ``_run`` reads a run folder, ``_stats``
  its intervals, ``_sections`` and ``_reproduce`` the text), ``breastus._pipeline``
  (:func:`train_and_evaluate`) and :mod:`breastus.service` (the HTTP
  service and its page, above prediction and export).
- :mod:`breastus.evaluation` — metrics on a dataset, calibration, plots, and
  cross-validation (``_cv``; its groups in ``_groups``, its figures and bootstrap
  in ``_bootstrap``).
- :mod:`breastus.prediction` — the :class:`Predictor` (``_predictor``; its result in
  ``_prediction``, loading in ``_loading``, the model run in ``_forward``, the lesion
  work in ``_multitask`` and ``_lesion``), DICOM cine frames (``_frames``) and
  archive-scale prediction on Ray (``_ray``; its inputs in ``_archive_inputs``, its
  Parquet rows and part files in ``_archive_rows``).
- :mod:`breastus.explain` (class-activation maps in ``_cam``, their target layer in
  ``_layers``, localisation scores, overlays)
  and :mod:`breastus.export` (TorchScript, ONNX, and int8 export in ``_quantize``): below prediction, which calls them for ``Predictor.explain`` and
  ``Predictor.from_exported``.
- :mod:`breastus.training` — :class:`TrainConfig`, the :class:`Trainer`, history.
- :mod:`breastus.models` — the factory and weights (``_factory``, ``_weights``),
  checkpoints, and the multi-task U-Nets (``_segmentation``); beside it
  :mod:`breastus.data` — image decoding (``_io``; DICOM in ``_dicom``, its header in
  ``_dicom_header``), user image inputs (``_inputs``), folder and manifest
  discovery (``_discovery``), the dataset (``_dataset``),
  splits, duplicates, the audit (``_audit``, ``_audit_report``, ``_audit_html``)
  and the preprocessed-image cache.
- :mod:`breastus.transforms` — the input contract (``_contract``:
  :class:`~breastus.transforms.InputContract`, a model's input size, normalisation
  and preprocessing, built once by :meth:`TrainConfig.input_contract`, stored once in
  checkpoints and exports, read by the Predictor, export and explanations),
  preprocessing (``_preprocess``, with the field-of-view crop in ``_field_of_view``
  and the intensity standardisation in ``_intensity``), augmentation, the lesion
  crop and the input geometry (``_geometry``).
- Shared foundations that import no layer: errors (``_errors``), metrics
  (``_metrics`` and ``_segmentation_metrics``, used by training and evaluation),
  the lesion decision rule (``_lesion_decision``, calibrated by training, applied
  by prediction), the CPU precision choice (``_precision``), the run-folder file
  names (``_run_files``), atomic writes and relative paths (``_files``), devices
  and deprecations.
"""

from breastus._errors import BreastusError as BreastusError
from breastus._errors import CheckpointError as CheckpointError
from breastus._errors import ConfigError as ConfigError
from breastus._errors import DataError as DataError
from breastus._errors import WeightsUnavailableError as WeightsUnavailableError
from breastus._pipeline import RunResult as RunResult
from breastus._pipeline import train_and_evaluate as train_and_evaluate
from breastus._precision import cpu_features as cpu_features
from breastus._precision import has_fast_bf16 as has_fast_bf16
from breastus._version import __version__ as __version__
from breastus.data import DEFAULT_CLASS_NAMES as DEFAULT_CLASS_NAMES
from breastus.data import AuditReport as AuditReport
from breastus.data import Sample as Sample
from breastus.data import UltrasoundDataset as UltrasoundDataset
from breastus.data import audit as audit
from breastus.data import kfold_indices as kfold_indices
from breastus.data import train_val_test_split as train_val_test_split
from breastus.evaluation import BinaryMetrics as BinaryMetrics
from breastus.evaluation import ClassificationMetrics as ClassificationMetrics
from breastus.evaluation import CVResult as CVResult
from breastus.evaluation import EvaluationResult as EvaluationResult
from breastus.evaluation import compute_binary_metrics as compute_binary_metrics
from breastus.evaluation import compute_metrics as compute_metrics
from breastus.evaluation import cross_validate as cross_validate
from breastus.evaluation import evaluate as evaluate
from breastus.evaluation import expected_calibration_error as expected_calibration_error
from breastus.evaluation import fit_temperature as fit_temperature
from breastus.explain import LocalisationReport as LocalisationReport
from breastus.explain import evaluate_localisation as evaluate_localisation
from breastus.explain import save_overlay as save_overlay
from breastus.export import export_model as export_model
from breastus.models import Checkpoint as Checkpoint
from breastus.models import ModelInfo as ModelInfo
from breastus.models import create_model as create_model
from breastus.models import list_models as list_models
from breastus.models import load_checkpoint as load_checkpoint
from breastus.prediction import Prediction as Prediction
from breastus.prediction import Predictor as Predictor
from breastus.reporting import write_model_card as write_model_card
from breastus.training import EpochRecord as EpochRecord
from breastus.training import TrainConfig as TrainConfig
from breastus.training import Trainer as Trainer
from breastus.training import TrainHistory as TrainHistory
from breastus.transforms import InputContract as InputContract
from breastus.transforms import Preprocessing as Preprocessing
from breastus.transforms import eval_transform as eval_transform
from breastus.transforms import train_transform as train_transform

__all__ = [
    "DEFAULT_CLASS_NAMES",
    "AuditReport",
    "BinaryMetrics",
    "BreastusError",
    "CVResult",
    "Checkpoint",
    "CheckpointError",
    "ClassificationMetrics",
    "ConfigError",
    "DataError",
    "EpochRecord",
    "EvaluationResult",
    "InputContract",
    "LocalisationReport",
    "ModelInfo",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "RunResult",
    "Sample",
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "UltrasoundDataset",
    "WeightsUnavailableError",
    "__version__",
    "audit",
    "compute_binary_metrics",
    "compute_metrics",
    "cpu_features",
    "create_model",
    "cross_validate",
    "eval_transform",
    "evaluate",
    "evaluate_localisation",
    "expected_calibration_error",
    "export_model",
    "fit_temperature",
    "has_fast_bf16",
    "kfold_indices",
    "list_models",
    "load_checkpoint",
    "save_overlay",
    "train_and_evaluate",
    "train_transform",
    "train_val_test_split",
    "write_model_card",
]
