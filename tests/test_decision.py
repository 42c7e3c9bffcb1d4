"""The lesion decision rule: lesion_score, calibrate_lesion_threshold, decide (issue 13, part 3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from breastus._errors import ConfigError, DataError
from breastus._lesion_decision import (
    calibrate_lesion_threshold,
    decide,
    decide_indices,
    lesion_score,
    lesion_scores,
)

NAMES = ("benign", "malignant", "normal")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

maps = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.floats(0.0, 1.0, allow_nan=False),
)
probability_rows = hnp.arrays(np.float64, 3, elements=st.floats(0.001, 1.0)).map(lambda r: r / r.sum())


def test_lesion_score_empty_full_and_blob() -> None:
    prob = np.zeros((64, 64))
    assert lesion_score(prob) == 0.0
    assert lesion_score(np.ones((64, 64))) == 1.0
    prob[30, 30] = 1.0  # one bright pixel is not a lesion: the 2 px window averages it down
    assert lesion_score(prob) == pytest.approx(0.25)
    prob[10:20, 10:20] = 0.8
    assert lesion_score(prob) == pytest.approx(0.8)
    assert lesion_score(prob[None]) == lesion_score(prob)


def test_lesion_scores_batch_matches_single_and_window() -> None:
    rng = np.random.default_rng(0)
    batch = rng.random((4, 1, 32, 32))
    assert np.allclose(lesion_scores(batch), [lesion_score(m) for m in batch])
    assert lesion_scores(batch, window=1) == pytest.approx(batch.reshape(4, -1).max(axis=1))
    assert lesion_scores(batch, window=999) == pytest.approx(batch.reshape(4, -1).mean(axis=1))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros((2, 3, 4, 4)), DataError),
        (np.full((1, 4, 4), 1.5), DataError),
        (np.full((1, 4, 4), np.nan), DataError),
    ],
)
def test_lesion_scores_rejects_bad_maps(bad: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"(?i)lesion"):
        lesion_scores(bad)


def test_lesion_scores_rejects_bad_window() -> None:
    with pytest.raises(ConfigError, match="window must be an int >= 1"):
        lesion_scores(np.zeros((1, 4, 4)), window=0)


@FAST
@given(maps, st.data())
def test_lesion_score_is_monotone_in_the_map(prob: np.ndarray, data: st.DataObject) -> None:
    bump = data.draw(hnp.arrays(np.float64, prob.shape, elements=st.floats(0.0, 1.0)))
    higher = np.clip(prob + bump, 0.0, 1.0)
    score = lesion_score(prob)
    assert 0.0 <= score <= 1.0
    assert lesion_score(higher) >= score - 1e-12
    assert score <= prob.max() + 1e-12


def test_calibrate_threshold_example_and_errors() -> None:
    scores = [0.1, 0.2, 0.3, 0.9, 0.8]
    lesion = [False, False, False, True, True]
    assert calibrate_lesion_threshold(scores, lesion, 2 / 3) == pytest.approx(0.25)
    assert calibrate_lesion_threshold(scores, lesion, 1.0) == pytest.approx(0.55)
    with pytest.raises(DataError, match="without normal images"):
        calibrate_lesion_threshold([0.5], [True])
    with pytest.raises(ConfigError, match=r"min_normal_recall must be a float in \(0, 1\]"):
        calibrate_lesion_threshold(scores, lesion, 0.0)
    with pytest.raises(DataError, match="same length"):
        calibrate_lesion_threshold(scores, lesion[:-1])


calibration_sets = st.lists(
    st.tuples(st.floats(0.0, 1.0, allow_nan=False), st.booleans()), min_size=1, max_size=40
).filter(lambda rows: any(not lesion for _, lesion in rows))


@FAST
@given(calibration_sets, st.floats(0.05, 1.0), st.floats(0.05, 1.0))
@example(rows=[(0.0, False), (5e-324, False)], recall_a=0.5, recall_b=1.0)  # the midpoint underflows to 0
def test_calibrated_threshold_keeps_normal_recall_and_is_monotone(
    rows: list[tuple[float, bool]], recall_a: float, recall_b: float
) -> None:
    scores = np.array([s for s, _ in rows])
    lesion = np.array([x for _, x in rows])
    low, high = sorted((recall_a, recall_b))
    t_low = calibrate_lesion_threshold(scores, lesion, low)
    t_high = calibrate_lesion_threshold(scores, lesion, high)
    normal = scores[~lesion]
    assert np.mean(normal < t_high) >= high - 1e-9
    assert np.mean(normal < t_low) >= low - 1e-9
    assert t_low <= t_high  # asking to keep more normals never lowers the threshold
    # the lowest such threshold: it finds every lesion a threshold meeting the recall could find
    best = min(t for t in np.append(scores, np.nextafter(scores.max(), 2.0)) if np.mean(normal < t) >= high - 1e-9)
    assert np.sum(scores[lesion] >= t_high) == np.sum(scores[lesion] >= best)


def test_decide_examples() -> None:
    assert decide([0.2, 0.1, 0.7], 0.9, 0.5, NAMES) == "benign"
    assert decide([0.1, 0.2, 0.7], 0.9, 0.5, NAMES) == "malignant"
    assert decide([0.5, 0.4, 0.1], 0.2, 0.5, NAMES) == "normal"
    assert decide([0.5, 0.4, 0.1], 0.5, 0.5, NAMES) == "benign"  # at the threshold: a lesion
    assert decide([0.2, 0.1, 0.7], None, None, NAMES) == "normal"  # argmax
    assert decide([0.2, 0.1, 0.7], 0.9, None, NAMES) == "normal"
    with pytest.raises(ConfigError, match="needs a 'normal' class"):
        decide([0.6, 0.4], 0.9, 0.5, ("benign", "malignant"))
    with pytest.raises(DataError, match="class_probs must have shape"):
        decide_indices(np.ones((2, 2)), None, None, NAMES)


@FAST
@given(probability_rows, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_normal_exactly_when_no_lesion(row: np.ndarray, lesion_probability: float, threshold: float) -> None:
    label = decide(row, lesion_probability, threshold, NAMES)
    assert (label == "normal") == (lesion_probability < threshold)
    if label != "normal":
        assert row[NAMES.index(label)] >= max(row[0], row[1])


@FAST
@given(probability_rows, st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_raising_the_threshold_never_turns_normal_into_lesion(
    row: np.ndarray, lesion_probability: float, t1: float, t2: float
) -> None:
    low, high = sorted((t1, t2))
    if decide(row, lesion_probability, low, NAMES) == "normal":
        assert decide(row, lesion_probability, high, NAMES) == "normal"
