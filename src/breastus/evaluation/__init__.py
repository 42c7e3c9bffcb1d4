"""Evaluation: metrics of a Predictor's predictions against labels."""

from breastus.evaluation._evaluate import EvaluationResult as EvaluationResult
from breastus.evaluation._evaluate import evaluate as evaluate
from breastus.evaluation._metrics import ClassificationMetrics as ClassificationMetrics
from breastus.evaluation._metrics import compute_metrics as compute_metrics

__all__ = ["ClassificationMetrics", "EvaluationResult", "compute_metrics", "evaluate"]
