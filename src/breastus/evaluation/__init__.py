"""Evaluation: metrics of a Predictor's predictions against labels."""

from breastus._segmentation_metrics import SegmentationMetrics as SegmentationMetrics
from breastus._segmentation_metrics import called_normal_shares as called_normal_shares
from breastus._segmentation_metrics import compute_segmentation_metrics as compute_segmentation_metrics
from breastus.evaluation._binary import BinaryMetrics as BinaryMetrics
from breastus.evaluation._binary import compute_binary_metrics as compute_binary_metrics
from breastus.evaluation._binary import sensitivity_at_specificity as sensitivity_at_specificity
from breastus.evaluation._bootstrap import bootstrap_ci as bootstrap_ci
from breastus.evaluation._calibration import CalibrationResult as CalibrationResult
from breastus.evaluation._calibration import ReliabilityBins as ReliabilityBins
from breastus.evaluation._calibration import calibrate_checkpoint as calibrate_checkpoint
from breastus.evaluation._calibration import checkpoint_logits as checkpoint_logits
from breastus.evaluation._calibration import expected_calibration_error as expected_calibration_error
from breastus.evaluation._calibration import fit_temperature as fit_temperature
from breastus.evaluation._calibration import reliability_bins as reliability_bins
from breastus.evaluation._cv import CVResult as CVResult
from breastus.evaluation._cv import cross_validate as cross_validate
from breastus.evaluation._evaluate import EvaluationResult as EvaluationResult
from breastus.evaluation._evaluate import evaluate as evaluate
from breastus.evaluation._groups import check_groups_within_folds as check_groups_within_folds
from breastus.evaluation._groups import resolve_groups as resolve_groups
from breastus.evaluation._metrics import ClassificationMetrics as ClassificationMetrics
from breastus.evaluation._metrics import compute_metrics as compute_metrics
from breastus.evaluation._plots import plot_confusion_matrix as plot_confusion_matrix
from breastus.evaluation._plots import plot_reliability_diagram as plot_reliability_diagram
from breastus.evaluation._plots import plot_roc_curves as plot_roc_curves
from breastus.evaluation._plots import plot_training_curves as plot_training_curves
from breastus.evaluation._plots import write_evaluation_plots as write_evaluation_plots

__all__ = [
    "BinaryMetrics",
    "CVResult",
    "CalibrationResult",
    "ClassificationMetrics",
    "EvaluationResult",
    "ReliabilityBins",
    "SegmentationMetrics",
    "bootstrap_ci",
    "calibrate_checkpoint",
    "called_normal_shares",
    "check_groups_within_folds",
    "checkpoint_logits",
    "compute_binary_metrics",
    "compute_metrics",
    "compute_segmentation_metrics",
    "cross_validate",
    "evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "plot_confusion_matrix",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_training_curves",
    "resolve_groups",
    "sensitivity_at_specificity",
    "write_evaluation_plots",
]
