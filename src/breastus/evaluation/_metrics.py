"""Classification metrics, re-exported from :mod:`breastus._metrics`.

This module is private. The metrics live one level down, in ``breastus._metrics``,
because training validates every epoch with them and :mod:`breastus.training` sits
below :mod:`breastus.evaluation` (see the import contracts in ``pyproject.toml``).
"""

from breastus._metrics import ClassificationMetrics as ClassificationMetrics
from breastus._metrics import compute_metrics as compute_metrics

__all__ = ["ClassificationMetrics", "compute_metrics"]
