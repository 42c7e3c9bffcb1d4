"""Per-frame prediction of DICOM cine loops, streamed batch by batch.

:meth:`Predictor.predict` reads the first frame of a DICOM file, like every
other reader in breastus. The functions here classify every frame, or chosen
frames, decoding one frame at a time and running the model ``batch_size``
frames at a time, so a long cine loop never sits in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from breastus._errors import DataError
from breastus.data._dicom import is_dicom, iter_dicom_frames
from breastus.data._io import load_image

if TYPE_CHECKING:
    from breastus.prediction._prediction import Prediction
    from breastus.prediction._predictor import Predictor

logger = logging.getLogger(__name__)

Frames = int | Sequence[int] | None
"""Which frames to classify: one 0-based number, several, or ``None`` for all."""


def parse_frames(text: str) -> Frames:
    """Parse the ``--frames`` option: ``"all"``, ``"N"`` or ``"N,M,..."`` (0-based).

    Raises
    ------
    DataError
        If ``text`` is none of these.

    """
    if text.strip().lower() == "all":
        return None
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 for n in numbers):
        raise DataError(
            f"--frames must be 'all', a frame number or comma-separated frame numbers (0 is the first frame). "
            f"Got {text!r} instead."
        )
    return numbers[0] if len(numbers) == 1 else numbers


def _images(path: Path, frames: Frames) -> Iterator[tuple[Image.Image, int | None]]:
    """The images of one file: the chosen frames of a DICOM file, else the file's one image (frame ``None``)."""
    if is_dicom(path):
        for frame in iter_dicom_frames(path, frames):
            yield frame.image, frame.index
    else:
        yield load_image(path), None


def predict_frames(
    predictor: Predictor,
    paths: Iterable[str | os.PathLike[str]],
    frames: int | Sequence[int] | None = None,
    on_error: str = "raise",
) -> Iterator[Prediction]:
    """Classify the frames of DICOM files (and the images of other files), streaming.

    Parameters
    ----------
    predictor : Predictor
    paths : iterable of path
        DICOM files give one :class:`~breastus.prediction.Prediction` per chosen
        frame (its ``frame`` set); other image files give one, ``frame=None``.
    frames : int, sequence of int or None, default=None
        0-based frame numbers; ``None``: every frame.
    on_error : {"raise", "skip"}, default="raise"
        ``"skip"`` logs and leaves out a file that cannot be read (frames of it
        decoded before the error are kept).

    Returns
    -------
    iterator of Prediction
        In input order, frames in the order asked; computed lazily.

    Raises
    ------
    DataError
        Right away if ``on_error`` is invalid; while iterating if a file or
        frame cannot be read and ``on_error="raise"``.

    """
    if on_error not in ("raise", "skip"):
        raise DataError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
    return _stream(predictor, paths, frames, on_error)


def _stream(
    predictor: Predictor, paths: Iterable[str | os.PathLike[str]], frames: Frames, on_error: str
) -> Iterator[Prediction]:
    batch: list[tuple[torch.Tensor, str, int | None]] = []
    skipped = 0
    for path in paths:
        name = os.fspath(path)
        images = _images(Path(name), frames)
        while True:
            try:
                with predictor._torch_threads():
                    image, index = next(images)
                    tensor = predictor.preprocess(image)
            except StopIteration:
                break
            except DataError as exc:
                if on_error == "raise":
                    raise
                skipped += 1
                logger.warning("Skipping unreadable image: %s", exc)
                break
            batch.append((tensor, name, index))
            if len(batch) == predictor.batch_size:
                yield from _flush(predictor, batch)
                batch = []
    if batch:
        yield from _flush(predictor, batch)
    if skipped:
        logger.warning("Skipped %d unreadable file(s).", skipped)


def _flush(predictor: Predictor, batch: list[tuple[torch.Tensor, str, int | None]]) -> Iterator[Prediction]:
    rows = predictor._proba_batch([tensor for tensor, _, _ in batch])
    for row, (_, path, index) in zip(rows, batch, strict=True):
        yield dataclasses.replace(predictor._to_prediction(row, path), frame=index)
