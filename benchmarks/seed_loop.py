"""The seed-style baseline shared by the speed benchmarks (plain PyTorch + torchvision, no breastus).

How the original student project read and trained on BUSI: a folder dataset that opens and
transforms every PNG on every access (torchvision v1 transforms), the eager model in the
default memory format, a default DataLoader, ``loss.item()`` every step. It imports nothing
from breastus, so a child process running it pays only PyTorch's own start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """How the student project read BUSI: open, convert and transform each PNG on every access."""

    def __init__(self, paths: list[Path], labels: list[int], transform: Callable[[Image.Image], torch.Tensor]):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.open(self.paths[index]).convert("RGB")
        return self.transform(image), self.labels[index]


def baseline_transforms(size: int) -> tuple[Any, Any]:
    """The seed project's training and evaluation transforms at ``size`` px."""
    train = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    evaluate = transforms.Compose(
        [transforms.Resize((size, size)), transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
    )
    return train, evaluate
