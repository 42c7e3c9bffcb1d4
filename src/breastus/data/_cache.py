"""Decode-and-preprocess-once cache of images as ``uint8`` tensors, in memory and optionally on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from breastus._errors import ConfigError, DataError
from breastus._files import atomic_write
from breastus.data._io import load_image, load_mask
from breastus.transforms._preprocess import Preprocessing

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2
"""Version of the on-disk entries; bumped whenever decoding or resizing changes (2: every name carries its preprocessing)."""


class ImageCache:
    """Keeps each image decoded and resized to ``size`` × ``size``, in memory and optionally on disk.

    Decoding a BUSI PNG and resizing it costs about 11 ms on a laptop core, more
    than the augmentation of the resized image; caching the resized ``uint8``
    tensor (``size * size`` bytes, 50 kB at 224 px) removes that cost from every epoch
    after the first.

    In memory, entries are keyed by path, modification time, inode and file
    size, so a changed file is read again (and its old entry dropped). With
    ``directory``, entries are also written there as ``safetensors`` files named
    by the SHA-256 of the file's bytes and ``size``: another process, a later
    run or another fold finds them whatever the file is called, and a file whose
    content changed gets a new name, so it is decoded again. Reading an entry
    never runs code (safetensors holds tensors only).

    Parameters
    ----------
    size : int
        Side of the square the image is brought to.
    directory : str or pathlib.Path, optional
        Folder for the on-disk store (created if missing). ``None`` (default):
        memory only.
    preprocessing : Preprocessing, optional
        Entries are exactly what :meth:`Preprocessing.step
        <breastus.transforms.Preprocessing.step>` at ``size`` outputs (crop,
        intensity, resize; the same step for images and masks), the step
        every model-input transform starts with, so a transform built with
        ``prepared=True`` (:meth:`InputContract.eval_transform
        <breastus.transforms.InputContract.eval_transform>`) gives cached items
        the pixels uncached ones get. Default ``Preprocessing()``: the plain
        stretch to the square. On disk, entries of another preprocessing have
        another name.

    Attributes
    ----------
    decoded : int
        Images decoded from their file so far.
    disk_hits : int
        Images read from the on-disk store so far.

    Raises
    ------
    ConfigError
        If ``size`` is not an int >= 1, or ``directory`` cannot be created.

    Examples
    --------
    >>> from breastus.data import ImageCache
    >>> cache = ImageCache(224, directory="~/.cache/breastus/images")  # doctest: +SKIP
    >>> cache.get("../shared/datasets/busi/benign/benign (1).png").shape  # doctest: +SKIP
    torch.Size([1, 224, 224])

    """

    def __init__(
        self, size: int, directory: str | Path | None = None, preprocessing: Preprocessing | None = None
    ) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"The 'size' parameter of ImageCache must be an int >= 1. Got {size!r} instead.")
        self.size = size
        self.preprocessing = Preprocessing() if preprocessing is None else preprocessing
        self.directory = None if directory is None else Path(directory).expanduser()
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"ImageCache cannot create its directory {str(self.directory)!r} ({exc}); "
                    "pass a writable folder or directory=None to cache in memory only."
                ) from exc
        self.decoded = 0
        self.disk_hits = 0
        self._entries: dict[tuple[str, int, int, int], torch.Tensor] = {}
        self._masks: dict[tuple[tuple[str, int, int, int], tuple[str, ...]], tuple[torch.Tensor, torch.Tensor]] = {}
        self._key_of_path: dict[str, tuple[str, int, int, int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        where = "memory" if self.directory is None else f"memory + {str(self.directory)!r}"
        return f"ImageCache(size={self.size}, {len(self)} images in {where})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def entry_name(self, data: bytes) -> str:
        """File name of the on-disk entry of an image file whose contents are ``data``."""
        recipe = hashlib.sha256(json.dumps(self.preprocessing.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{hashlib.sha256(data).hexdigest()}-{self.size}px-{recipe}-v{CACHE_FORMAT}.safetensors"

    def get(self, path: str | Path) -> torch.Tensor:
        """The ``(1, size, size)`` ``uint8`` tensor of the image at ``path``, decoding it if needed.

        Raises
        ------
        DataError
            If the file is missing or cannot be decoded (see :func:`~breastus.data.load_image`).

        """
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise DataError(f"Image file {str(path)!r} does not exist or cannot be read ({exc}).") from exc
        key = (str(path), stat.st_mtime_ns, stat.st_ino, stat.st_size)
        cached = self._entries.get(key)
        if cached is not None:
            return cached
        resized = self._load(path)
        with self._lock:
            stale = self._key_of_path.get(key[0])
            if stale is not None and stale != key:
                self._entries.pop(stale, None)
            self._entries[key] = resized
            self._key_of_path[key[0]] = key
        return resized

    def get_with_mask(self, path: str | Path, mask_paths: Sequence[str | Path]) -> tuple[torch.Tensor, torch.Tensor]:
        """The image at ``path`` and its merged lesion mask, both ``(1, size, size)`` ``uint8``.

        The mask (0 and 1; all 0 when ``mask_paths`` is empty) gets the same
        preprocessing crop and resize as the image (nearest-neighbour). Masks are
        kept in memory only, keyed by the image's entry and the mask paths; the
        image comes from :meth:`get` (and the disk store). When a mask is first
        asked for, the image is decoded once more to cut the same crop.

        Raises
        ------
        DataError
            If the image or a mask cannot be read, or a mask does not fit the image.

        """
        path = Path(path)
        image = self.get(path)
        key = (self._key_of_path[str(path)], tuple(str(p) for p in mask_paths))
        cached = self._masks.get(key)
        if cached is not None and cached[0] is image:
            return cached
        full = TF.pil_to_tensor(load_image(path))
        merged = (
            load_mask(list(mask_paths), (full.shape[-1], full.shape[-2]))
            if mask_paths
            else np.zeros(full.shape[-2:], dtype=bool)
        )
        lesion = tv_tensors.Mask(torch.from_numpy(merged.astype(np.uint8))[None])
        _, mask = self.preprocessing.step(self.size)(full, lesion)  # the image's step, moving the mask along
        mask = mask.as_subclass(torch.Tensor)
        with self._lock:
            self._masks[key] = (image, mask)
        return image, mask

    def _load(self, path: Path) -> torch.Tensor:
        if self.directory is None:
            return self._decode(path, None)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"Image file {str(path)!r} cannot be read ({exc}).") from exc
        entry = self.directory / self.entry_name(data)
        if entry.is_file():
            stored = self._read_entry(entry)
            if stored is not None:
                with self._lock:
                    self.disk_hits += 1
                return stored
        resized = self._decode(path, data)
        self._write_entry(entry, resized, path)
        return resized

    def _decode(self, path: Path, data: bytes | None) -> torch.Tensor:
        step = self.preprocessing.step(self.size)  # the model-input transforms' own first step
        resized: torch.Tensor = step(TF.pil_to_tensor(load_image(path, data))).as_subclass(torch.Tensor)
        with self._lock:
            self.decoded += 1
        return resized

    def _read_entry(self, entry: Path) -> torch.Tensor | None:
        try:
            tensor = load_safetensors(entry.read_bytes())["image"]
        except (OSError, KeyError, SafetensorError) as exc:
            logger.warning("Ignoring unreadable image cache entry %s (%s); decoding the image again.", entry, exc)
            return None
        if tensor.dtype != torch.uint8 or tuple(tensor.shape) != (1, self.size, self.size):
            logger.warning("Ignoring image cache entry %s of shape %s; decoding the image again.", entry, tensor.shape)
            return None
        return tensor

    def _write_entry(self, entry: Path, tensor: torch.Tensor, source: Path) -> None:
        payload = save_safetensors({"image": tensor.contiguous()}, metadata={"source": source.name})
        try:
            atomic_write(entry, lambda handle: handle.write(payload), durable=False)
        except OSError as exc:
            logger.warning("Could not write image cache entry %s (%s); continuing without it.", entry, exc)
