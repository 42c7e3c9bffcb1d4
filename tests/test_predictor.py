"""Predictor: every input type, probabilities, streaming folders, and test-time augmentation."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastus import CheckpointError, ConfigError, DataError, Prediction, Predictor
from breastus.prediction import ImageInput

CLASSES = ("benign", "malignant", "normal")


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A structured 8-bit grayscale picture (not left-right symmetric) and its file."""
    yy, xx = np.mgrid[0:72, 0:90]
    gray = ((xx * 2.5 + 60 * np.sin(yy / 7.0) + 60) % 256).astype(np.uint8)
    gray[20:40, 10:30] = 250
    path = tmp_path_factory.mktemp("scan") / "scan.png"
    Image.fromarray(gray).save(path)
    return path, gray


def _check(prediction: Prediction) -> np.ndarray:
    assert isinstance(prediction, Prediction)
    assert tuple(prediction.probabilities) == CLASSES
    values = np.array(list(prediction.probabilities.values()))
    assert np.all(values >= 0)
    assert values.sum() == pytest.approx(1.0, abs=1e-6)
    assert prediction.label == CLASSES[int(values.argmax())]
    assert prediction.confidence == pytest.approx(values.max())
    return values


def test_from_checkpoint(predictor: Predictor, tiny_checkpoint: Path) -> None:
    assert predictor.class_names == CLASSES
    assert predictor.image_size == 32
    assert predictor.device.type == "cpu"
    assert Predictor.from_checkpoint(tiny_checkpoint.parent, device="cpu").class_names == CLASSES  # a run folder
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor.from_checkpoint(tiny_checkpoint.parent / "missing.pt")


def test_predict_a_path(predictor: Predictor, scan: tuple[Path, np.ndarray]) -> None:
    path, _ = scan
    for given in (path, str(path)):
        prediction = predictor.predict(given)
        _check(prediction)
        assert prediction.path == str(path)
    assert predictor.predict(path).to_dict()["path"] == str(path)


INPUTS: dict[str, Callable[[np.ndarray], ImageInput]] = {
    "pil_L": lambda g: Image.fromarray(g, mode="L"),
    "pil_RGB": lambda g: Image.fromarray(np.stack([g] * 3, axis=2), mode="RGB"),
    "pil_RGBA": lambda g: Image.fromarray(np.dstack([g, g, g, np.full_like(g, 255)]), mode="RGBA"),
    "pil_I;16": lambda g: Image.fromarray(g.astype(np.uint16) * 257),
    "numpy_uint8_2d": lambda g: g,
    "numpy_uint8_hw1": lambda g: g[..., None],
    "numpy_uint8_rgb": lambda g: np.stack([g] * 3, axis=2),
    "numpy_uint8_rgba": lambda g: np.dstack([g, g, g, np.full_like(g, 255)]),
    "numpy_uint16": lambda g: g.astype(np.uint16) * 257,
    "numpy_float_0_1": lambda g: g.astype(np.float32) / 255,
    "numpy_float64_0_255": lambda g: g.astype(np.float64),
    "numpy_int32": lambda g: g.astype(np.int32),
    "numpy_noncontiguous": lambda g: np.asfortranarray(g),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_every_input_type_matches_the_file(predictor: Predictor, scan: tuple[Path, np.ndarray], kind: str) -> None:
    path, gray = scan
    reference = _check(predictor.predict(path))
    prediction = predictor.predict(INPUTS[kind](gray))
    assert prediction.path is None
    np.testing.assert_allclose(_check(prediction), reference, atol=1e-6)


def test_pil_inputs_of_other_content(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    for image in (
        Image.fromarray(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8), mode="RGB"),
        Image.fromarray(rng.integers(0, 255, (50, 60, 4), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(rng.integers(0, 65535, (50, 60), dtype=np.uint16)),
        Image.new("P", (60, 50)),
        Image.new("1", (60, 50), 1),
    ):
        _check(predictor.predict(image))


def test_lists_keep_order_and_length(predictor: Predictor, scan: tuple[Path, np.ndarray]) -> None:
    path, gray = scan
    inputs: list[ImageInput] = [path, gray, Image.fromarray(255 - gray), np.fliplr(gray).copy(), str(path)]
    results = predictor.predict(inputs)
    assert isinstance(results, list) and len(results) == 5
    rows = [_check(r) for r in results]
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-6)
    np.testing.assert_allclose(rows[0], rows[4], atol=1e-6)
    assert [r.path for r in results] == [str(path), None, None, None, str(path)]
    assert predictor.predict(tuple(inputs))[2].probabilities == results[2].probabilities
    assert predictor.predict([]) == []
    probabilities = predictor.predict_proba(inputs)
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities, np.stack(rows), atol=1e-6)


def test_batching_does_not_change_results(tiny_checkpoint: Path, scan: tuple[Path, np.ndarray]) -> None:
    _, gray = scan
    inputs: list[ImageInput] = [np.roll(gray, k, axis=1) for k in range(0, 50, 10)]
    one_batch = Predictor.from_checkpoint(tiny_checkpoint, device="cpu").predict(inputs)
    small_batches = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=2).predict(inputs)
    for a, b in zip(one_batch, small_batches, strict=True):
        np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((10, 10, 2), dtype=np.uint8), r"shape \(H, W\)"),
        (np.zeros((0, 10), dtype=np.uint8), "empty"),
        (np.zeros((2, 3, 4, 5), dtype=np.uint8), "shape"),
        (np.zeros((10, 10), dtype=np.complex64), "dtype"),
        (42, "type int"),
    ],
)
def test_bad_inputs(predictor: Predictor, bad: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        predictor.predict(bad)  # type: ignore[call-overload]


def test_unreadable_file_is_named(predictor: Predictor, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_text("no pixels here")
    with pytest.raises(DataError, match=r"broken\.png"):
        predictor.predict(bad)
    with pytest.raises(DataError, match=r"absent\.png"):
        predictor.predict([tmp_path / "absent.png"])


def test_invalid_settings(tiny_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=0)
    with pytest.raises(ConfigError, match="device"):
        Predictor.from_checkpoint(tiny_checkpoint, device="tpu0")


# ------------------------------------------------------------------ folders


def test_predict_folder_streams_and_skips_masks(predictor: Predictor, tiny_folder: Path) -> None:
    stream = predictor.predict_folder(tiny_folder)
    assert isinstance(stream, types.GeneratorType)
    results = list(stream)
    assert len(results) == 30  # 12 + 10 + 8 images; their 30 masks are skipped
    assert not any("_mask" in (r.path or "") for r in results)
    for r in results:
        _check(r)
    benign = [Path(r.path).name for r in results if "benign" in (r.path or "")]  # type: ignore[arg-type]
    assert benign == [f"benign ({i}).png" for i in range(1, 13)]  # natural order
    flat = list(predictor.predict_folder(tiny_folder / "normal", recursive=False))
    assert len(flat) == 8


def test_predict_folder_reads_one_batch_at_a_time(
    tiny_checkpoint: Path, tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)
    decoded: list[object] = []
    original = predictor.preprocess
    monkeypatch.setattr(predictor, "preprocess", lambda image: decoded.append(image) or original(image))
    stream = predictor.predict_folder(tiny_folder)
    assert decoded == []  # nothing is read before the first result is asked for
    next(stream)
    assert len(decoded) == 4  # one batch
    for _ in range(4):
        next(stream)
    assert len(decoded) == 8


def test_predict_folder_errors(predictor: Predictor, tiny_folder: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.*not a folder"):
        predictor.predict_folder(tiny_folder / "nowhere")  # raised at the call, not at the first next()
    with pytest.raises(DataError, match="on_error"):
        predictor.predict_folder(tiny_folder, on_error="ignore")
    (tiny_folder / "benign" / "benign (5).png").write_bytes(b"")
    with pytest.raises(DataError, match=r"benign \(5\)\.png.*empty"):
        list(predictor.predict_folder(tiny_folder))
    kept = list(predictor.predict_folder(tiny_folder, on_error="skip"))
    assert len(kept) == 29


# ------------------------------------------------------------------ test-time augmentation


def test_tta_averages_the_image_and_its_mirror(tiny_checkpoint: Path, scan: tuple[Path, np.ndarray]) -> None:
    _, gray = scan
    plain = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    tta = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", tta=True)
    expected = (_check(plain.predict(gray)) + _check(plain.predict(np.fliplr(gray).copy()))) / 2
    np.testing.assert_allclose(_check(tta.predict(gray)), expected, atol=1e-5)
    assert not np.allclose(_check(plain.predict(gray)), expected, atol=1e-5)  # the mirror does change the output
    symmetric = np.concatenate([gray[:, :45], np.fliplr(gray[:, :45])], axis=1)
    np.testing.assert_allclose(_check(tta.predict(symmetric)), _check(plain.predict(symmetric)), atol=1e-5)
