"""Augment a whole batch of ``uint8`` images at once, on any device.

:func:`~breastus.transforms.train_transform` augments one image at a time on
the CPU (about 4–12 ms per 224-px image here, as much as decoding it).
:class:`BatchAugment` draws the same kinds of random parameters per image but
composes the crop, flip, rotation, shift and zoom into one affine matrix per
image and resamples the whole batch with a single
:func:`torch.nn.functional.grid_sample` call, on the device the batch is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F


class BatchAugment:
    """The training augmentation of :func:`~breastus.transforms.train_transform`, for whole batches.

    Each image gets its own random parameters, drawn on the CPU from
    ``generator`` (so results do not depend on the device): a random resized crop
    of 70–100 % of the area with aspect 0.8–1.25, a horizontal flip with
    probability 0.5, a rotation of ±10°, a shift of ±5 % and a zoom of 95–105 %
    (one bilinear resampling for all of them; outside the image is black), then
    brightness and contrast factors in 0.8–1.2. The single grayscale channel is
    repeated to three and normalised with ``mean`` and ``std``.

    It differs from the per-image transform only in details of the random draw:
    one bilinear resampling instead of a bilinear crop followed by a
    nearest-neighbour affine warp, and brightness always before contrast.

    Parameters
    ----------
    size : int
        Output side in pixels.
    mean, std : sequence of float
        Per-channel normalisation (three values).

    Examples
    --------
    >>> import torch
    >>> from breastus.transforms import BatchAugment
    >>> augment = BatchAugment(64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    >>> images = torch.randint(0, 256, (4, 1, 80, 80), dtype=torch.uint8)
    >>> augment(images, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 3, 64, 64])

    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ValueError(f"size must be an int >= 8. Got {size!r} instead.")
        self.size = size
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float32).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return f"BatchAugment(size={self.size})"

    def affine_matrices(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Random ``(n, 2, 3)`` sampling matrices (output to input, normalised coordinates)."""
        rand = torch.rand(n, 7, generator=generator, dtype=torch.float64)
        area = 0.7 + 0.3 * rand[:, 0]
        log_ratio = math.log(0.8) + (math.log(1.25) - math.log(0.8)) * rand[:, 1]
        ratio = torch.exp(log_ratio)
        crop_w = torch.sqrt(area * ratio).clamp(max=1.0)
        crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
        centre_x = (1 - crop_w) * (2 * rand[:, 2] - 1)
        centre_y = (1 - crop_h) * (2 * rand[:, 3] - 1)
        flip = torch.where(rand[:, 4] < 0.5, -1.0, 1.0).to(torch.float64)
        angle = torch.deg2rad(20 * rand[:, 5] - 10)
        shift = 0.1 * (2 * torch.rand(n, 2, generator=generator, dtype=torch.float64) - 1)
        zoom = 0.95 + 0.1 * rand[:, 6]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # Inverse of the affine warp: input = (R S)^-1 (output - shift).
        inv = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
        inv_shift = -(inv @ shift.unsqueeze(-1)).squeeze(-1)
        # Then the flip (x -> -x) and the crop (input = centre + half-size * x).
        scale_rows = torch.stack([crop_w * flip, crop_h], 1).unsqueeze(-1)
        linear = scale_rows * inv
        offset = scale_rows.squeeze(-1) * inv_shift + torch.stack([centre_x, centre_y], 1)
        return torch.cat([linear, offset.unsqueeze(-1)], dim=2).float()

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``(B, 1, H, W)`` ``uint8`` images into normalised ``(B, 3, size, size)`` ``float32``.

        Parameters
        ----------
        images : torch.Tensor
            A batch of single-channel ``uint8`` images (any device).
        generator : torch.Generator, optional
            CPU generator for the random parameters (the global one if ``None``).

        Returns
        -------
        torch.Tensor

        """
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"images must have shape (B, 1, H, W). Got {tuple(images.shape)} instead.")
        n, device = images.shape[0], images.device
        theta = self.affine_matrices(n, generator).to(device)
        colour = torch.rand(n, 2, generator=generator).to(device)
        brightness = (0.8 + 0.4 * colour[:, 0]).view(n, 1, 1, 1)
        contrast = (0.8 + 0.4 * colour[:, 1]).view(n, 1, 1, 1)
        pixels = images.float().div_(255)
        # affine_grid's batched matmul is slow on the CPU; the same grid by broadcasting:
        steps = (torch.arange(self.size, device=device, dtype=torch.float32) * 2 + 1) / self.size - 1
        xs, ys = steps.view(1, 1, -1), steps.view(1, -1, 1)
        t = theta.view(n, 6, 1, 1)
        grid = torch.stack([t[:, 0] * xs + t[:, 1] * ys + t[:, 2], t[:, 3] * xs + t[:, 4] * ys + t[:, 5]], dim=-1)
        out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.mul_(brightness).clamp_(0, 1)
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = out.sub_(mean).mul_(contrast).add_(mean).clamp_(0, 1)
        return (out - self.mean.to(device)) / self.std.to(device)
