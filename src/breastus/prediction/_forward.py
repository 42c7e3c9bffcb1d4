"""Running a Predictor's model on a batch: precision, test-time mirroring, temperature, threads.

:func:`forward_batch` gives the class probabilities (and, for multi-task models, the lesion
probability maps) of prepared tensors; :func:`model_outputs` runs the model once under the
chosen precision (bfloat16 autocast with channels-last, see :mod:`breastus._precision`).
:func:`single_torch_thread` keeps PyTorch to one thread while inputs are prepared for a
model that runs outside it (ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from breastus._precision import autocast
from breastus.models._segmentation import split_outputs

if TYPE_CHECKING:
    from breastus.prediction._predictor import Predictor


def forward_batch(predictor: Predictor, tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities ``(N, C)`` and, for multi-task models, lesion probability maps ``(N, S, S)``."""
    if predictor._host_batches:
        batch = torch.from_numpy(np.stack([t.numpy() for t in tensors]))
    else:
        batch = torch.stack(list(tensors)).to(predictor.device)
    temperature = predictor.temperature
    with torch.inference_mode():
        mask_logits, logits = predictor._outputs(batch)
        probabilities = torch.softmax(logits / temperature, dim=1)
        lesion = None if mask_logits is None else torch.sigmoid(mask_logits)[:, 0]
        if predictor.tta:
            mirrored_mask, mirrored = predictor._outputs(torch.flip(batch, dims=[3]))
            probabilities = (probabilities + torch.softmax(mirrored / temperature, dim=1)) / 2
            if lesion is not None and mirrored_mask is not None:
                lesion = (lesion + torch.flip(torch.sigmoid(mirrored_mask)[:, 0], dims=[2])) / 2
    return probabilities.cpu().numpy(), None if lesion is None else lesion.cpu().numpy()


def model_outputs(predictor: Predictor, batch: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Lesion logits (float32, multi-task models; else ``None``) and class logits (float64) of a batch.

    Computed under autocast, channels-last, when the predictor's precision is bf16.
    """
    dtype = predictor._autocast_dtype
    if dtype is not None:
        batch = batch.contiguous(memory_format=torch.channels_last)
    with autocast(predictor.device, dtype):
        mask_logits, logits = split_outputs(predictor.model(batch))
    return None if mask_logits is None else mask_logits.float(), logits.double()


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run PyTorch on one intra-op thread inside the block (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
