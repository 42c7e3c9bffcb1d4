"""Do heatmaps point at the lesion? The pointing game and mass inside the mask, with baselines.

This module is private; use the names re-exported by :mod:`breastus.explain`.

Two scores per image, both computed at the image's own resolution:

* **pointing game** (Zhang et al., *Top-down neural attention by excitation
  backprop*, 2016): a hit when the heatmap's maximum lies inside the lesion mask
  (or within ``tolerance`` pixels of it). Ties go to the first maximum in
  row-major order.
* **mass inside**: the share of the heatmap's total value that falls inside the
  mask (the "energy-based pointing game" of Score-CAM, Wang et al. 2020).

Heatmaps that ignore the image set the bar. A **uniform random** heatmap (i.i.d.
U(0, 1) pixels, seeded) scores about the mask's share of the image on both. A
**centred Gaussian** heatmap scores what "the lesion is usually in the middle of
the frame" is worth: its maximum is the image centre, so its pointing game counts
the images whose lesion covers the centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage, stats

from breastus._errors import ConfigError, DataError

DEFAULT_GAUSSIAN_SIGMA = 0.25
"""Standard deviation of the centred-Gaussian baseline, as a fraction of the image's
width (horizontally) and height (vertically)."""


def _check_pair(heatmap: np.ndarray, mask: np.ndarray, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    heat = np.asarray(heatmap, dtype=np.float64)
    lesion = np.asarray(mask).astype(bool)
    if heat.ndim != 2 or heat.shape != lesion.shape:
        raise DataError(
            f"The heatmap{where} has shape {heat.shape} but its mask has shape {lesion.shape}; both must be the "
            "same (height, width). Compute heatmaps at the image's size (Predictor.explain does)."
        )
    if not lesion.any():
        raise DataError(
            f"The mask{where} is empty (no lesion pixel); the pointing game is undefined for it. Leave out images "
            "without a lesion (BUSI's normal class)."
        )
    return heat, lesion


def pointing_game_hit(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> bool:
    """Whether the heatmap's maximum falls inside the lesion mask.

    Parameters
    ----------
    heatmap : numpy.ndarray
        ``(H, W)`` heatmap (any scale).
    mask : numpy.ndarray
        ``(H, W)`` lesion mask; non-zero is lesion. Must not be empty.
    tolerance : float, default=0.0
        Also count a maximum within this many pixels of the mask (Zhang et al.
        used 15 pixels).

    Returns
    -------
    bool

    Raises
    ------
    DataError
        If the shapes differ or the mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> heat = np.zeros((4, 4)); heat[1, 2] = 1.0
    >>> mask = np.zeros((4, 4), dtype=bool); mask[:2, 2:] = True
    >>> pointing_game_hit(heat, mask)
    True

    """
    heat, lesion = _check_pair(heatmap, mask)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    if lesion[row, col]:
        return True
    if tolerance <= 0:
        return False
    distance = ndimage.distance_transform_edt(~lesion)
    return bool(distance[row, col] <= tolerance)


def mass_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's total value inside the lesion mask, in [0, 1].

    Negative values are clipped to 0. An all-zero heatmap counts as uniform (it
    scores the mask's area share).

    Raises
    ------
    DataError
        If the shapes differ or the mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> mass_inside(np.ones((2, 2)), np.array([[1, 0], [0, 0]]))
    0.25

    """
    heat, lesion = _check_pair(heatmap, mask)
    heat = np.clip(heat, 0.0, None)
    total = float(heat.sum())
    if total <= 0:
        return float(lesion.mean())
    return float(heat[lesion].sum() / total)


def centred_gaussian(shape: tuple[int, int], sigma: float = DEFAULT_GAUSSIAN_SIGMA) -> np.ndarray:
    """A Gaussian bump centred on the image, peak 1.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)``.
    sigma : float, default=0.25
        Standard deviation as a fraction of the side: ``sigma * width``
        horizontally and ``sigma * height`` vertically.

    Returns
    -------
    numpy.ndarray
        ``float32`` of ``shape``; its first maximum (row-major) is the centre pixel
        ``((height - 1) // 2, (width - 1) // 2)``.

    """
    if not sigma > 0:
        raise ConfigError(f"sigma must be a float > 0 (a fraction of the image side). Got {sigma!r} instead.")
    height, width = shape
    rows = (np.arange(height) - (height - 1) / 2) / (sigma * height)
    cols = (np.arange(width) - (width - 1) / 2) / (sigma * width)
    bump: np.ndarray = np.exp(-0.5 * (rows[:, None] ** 2 + cols[None, :] ** 2)).astype(np.float32)
    bump /= bump.max()
    return bump


def uniform_random(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A heatmap of i.i.d. U(0, 1) pixels (``float32``) drawn from ``rng``."""
    values: np.ndarray = rng.random(shape, dtype=np.float32)
    return values


@dataclass(frozen=True)
class LocalisationScore:
    """Pointing game and mass inside the mask of one heatmap source over a set of images.

    Attributes
    ----------
    source : str
        ``"gradcam"`` (the method), ``"random"`` or ``"centred gaussian"``.
    n_images : int
    hits : int
        Images whose heatmap maximum is inside the lesion.
    pointing_game : float
        ``hits / n_images``.
    pointing_game_ci : tuple of float
        Wilson 95 % confidence interval of the hit rate (:func:`scipy.stats.binomtest`).
    mass_inside : float
        Mean share of heatmap mass inside the lesion.
    per_class : dict of str to float
        Pointing-game hit rate of each class (when labels were given).
    image_hits : tuple of bool
        Per image, in input order.
    image_mass : tuple of float
        Per image, in input order.

    """

    source: str
    n_images: int
    hits: int
    pointing_game: float
    pointing_game_ci: tuple[float, float]
    mass_inside: float
    per_class: dict[str, float] = field(default_factory=dict)
    image_hits: tuple[bool, ...] = field(default=(), repr=False)
    image_mass: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (per-image values left out)."""
        return {
            "source": self.source,
            "n_images": self.n_images,
            "hits": self.hits,
            "pointing_game": self.pointing_game,
            "pointing_game_ci95": list(self.pointing_game_ci),
            "mass_inside": self.mass_inside,
            "pointing_game_per_class": dict(self.per_class),
        }


@dataclass(frozen=True)
class LocalisationReport:
    """Localisation scores of a heatmap method next to the two baselines on the same images.

    Attributes
    ----------
    method : LocalisationScore
    random : LocalisationScore
        Uniform random heatmaps (seeded).
    gaussian : LocalisationScore
        Centred Gaussian heatmaps.
    sigma : float
        The Gaussian's standard deviation as a fraction of the image side.
    tolerance : float
        Pointing-game tolerance in pixels.
    mask_share : float
        Mean share of the image covered by the lesion mask (the chance level).
    seed : int
        Seed of the random baseline.

    """

    method: LocalisationScore
    random: LocalisationScore
    gaussian: LocalisationScore
    sigma: float
    tolerance: float
    mask_share: float
    seed: int

    @property
    def scores(self) -> tuple[LocalisationScore, LocalisationScore, LocalisationScore]:
        """The method, random and Gaussian scores, in that order."""
        return self.method, self.random, self.gaussian

    @property
    def margin_over_gaussian(self) -> float:
        """Pointing-game hit rate of the method minus that of the centred Gaussian, in percentage points."""
        return 100.0 * (self.method.pointing_game - self.gaussian.pointing_game)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "n_images": self.method.n_images,
            "mask_share": self.mask_share,
            "gaussian_sigma": self.sigma,
            "tolerance_px": self.tolerance,
            "random_seed": self.seed,
            "margin_over_gaussian_points": self.margin_over_gaussian,
            "scores": [s.to_dict() for s in self.scores],
        }

    def summary(self) -> str:
        """A plain-text table, one row per heatmap source."""
        classes = list(self.method.per_class)
        header = ["heatmap", "pointing game", "95% CI", "mass inside", *[f"PG {c}" for c in classes]]
        rows = [header]
        for score in self.scores:
            low, high = score.pointing_game_ci
            rows.append(
                [
                    score.source,
                    f"{100 * score.pointing_game:.1f}% ({score.hits}/{score.n_images})",
                    f"{100 * low:.1f}-{100 * high:.1f}",
                    f"{100 * score.mass_inside:.1f}%",
                    *[f"{100 * score.per_class[c]:.1f}%" for c in classes],
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.append(
            f"{self.method.n_images} image(s); lesions cover {100 * self.mask_share:.1f}% of an image on average; "
            f"Gaussian sigma = {self.sigma:g} x side; tolerance {self.tolerance:g} px; "
            f"{self.method.source} - Gaussian = {self.margin_over_gaussian:+.1f} points."
        )
        return "\n".join(lines)


def _score(
    source: str,
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    labels: Sequence[str] | None,
    tolerance: float,
) -> LocalisationScore:
    hits = tuple(pointing_game_hit(h, m, tolerance) for h, m in zip(heatmaps, masks, strict=True))
    mass = tuple(mass_inside(h, m) for h, m in zip(heatmaps, masks, strict=True))
    n, k = len(hits), sum(hits)
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    per_class: dict[str, float] = {}
    if labels is not None:
        for name in sorted(set(labels)):
            chosen = [hit for hit, label in zip(hits, labels, strict=True) if label == name]
            per_class[name] = sum(chosen) / len(chosen)
    return LocalisationScore(
        source=source,
        n_images=n,
        hits=k,
        pointing_game=k / n,
        pointing_game_ci=(float(interval.low), float(interval.high)),
        mass_inside=math.fsum(mass) / n,
        per_class=per_class,
        image_hits=hits,
        image_mass=mass,
    )


def evaluate_localisation(
    heatmaps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    method: str = "gradcam",
    sigma: float = DEFAULT_GAUSSIAN_SIGMA,
    tolerance: float = 0.0,
    seed: int = 0,
) -> LocalisationReport:
    """Score heatmaps against lesion masks, next to a random and a centred-Gaussian baseline.

    Parameters
    ----------
    heatmaps : sequence of numpy.ndarray
        One ``(H, W)`` heatmap per image, e.g. from :meth:`breastus.Predictor.explain`.
    masks : sequence of numpy.ndarray
        The lesion mask of each image, same shapes; none may be empty.
    labels : sequence of str, optional
        Class of each image, for per-class hit rates.
    method : str, default="gradcam"
        Name of the heatmap source in the report.
    sigma : float, default=0.25
        Standard deviation of the Gaussian baseline as a fraction of the image side
        (see :func:`centred_gaussian`).
    tolerance : float, default=0.0
        Pointing-game tolerance in pixels (see :func:`pointing_game_hit`).
    seed : int, default=0
        Seed of the uniform random baseline.

    Returns
    -------
    LocalisationReport

    Raises
    ------
    DataError
        If there are no images, the counts differ, a heatmap and its mask differ in
        shape, or a mask is empty.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((20, 20), dtype=bool); mask[2:6, 2:6] = True
    >>> heat = np.zeros((20, 20)); heat[3, 3] = 1.0
    >>> report = evaluate_localisation([heat], [mask])
    >>> report.method.pointing_game, report.gaussian.pointing_game
    (1.0, 0.0)

    """
    if len(heatmaps) != len(masks) or (labels is not None and len(labels) != len(masks)):
        counts = f"{len(heatmaps)} heatmaps, {len(masks)} masks" + (
            f", {len(labels)} labels" if labels is not None else ""
        )
        raise DataError(f"Need one heatmap and one mask (and label) per image. Got {counts}.")
    if not masks:
        raise DataError("No image to score: pass at least one heatmap with a non-empty lesion mask.")
    lesions = [_check_pair(h, m, f" of image {i}")[1] for i, (h, m) in enumerate(zip(heatmaps, masks, strict=True))]
    rng = np.random.default_rng(seed)
    random_maps = [uniform_random(m.shape, rng) for m in lesions]
    gaussian_maps = [centred_gaussian(m.shape, sigma) for m in lesions]
    return LocalisationReport(
        method=_score(method, heatmaps, lesions, labels, tolerance),
        random=_score("random", random_maps, lesions, labels, tolerance),
        gaussian=_score("centred gaussian", gaussian_maps, lesions, labels, tolerance),
        sigma=sigma,
        tolerance=tolerance,
        mask_share=float(np.mean([m.mean() for m in lesions])),
        seed=seed,
    )
