"""Bad input everywhere a file is read: the dataset, the Predictor and the CLI (issue 5, item 1).

Every odd-but-valid image is decoded correctly; every unusable file or folder gives
a :class:`~breastus.DataError` whose message names the file and says what to do;
``on_error="skip"`` logs each skipped file and the count; the CLI prints one line
and exits with status 2, never a traceback.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_error_line, make_image_folder
from PIL import Image

from breastus import DataError, Predictor, UltrasoundDataset
from breastus.cli import main
from breastus.data import load_image, load_mask

W, H = 24, 16
RNG = np.random.default_rng(5)
GRAY = RNG.integers(0, 256, size=(H, W), dtype=np.uint8)


# ------------------------------------------------------------------ the files


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _zero_byte(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_png(path: Path) -> None:
    data = _png_bytes(GRAY)
    path.write_bytes(data[: len(data) // 2])


def _text_named_png(path: Path) -> None:
    path.write_text("this is a text file, not an image\n", encoding="utf-8")


# name -> (file name, writer, words the message must contain)
UNREADABLE: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "zero-byte": ("empty scan.png", _zero_byte, "empty (0 bytes)"),
    "truncated": ("cut scan.png", _truncated_png, "corrupt or truncated"),
    "text": ("notes.png", _text_named_png, "not an image"),
    "non-ascii": ("échographie 超声 (2).png", _zero_byte, "empty (0 bytes)"),
}
FIXES = ("delete", "remove", "re-export", "convert", "replace")


def _write_unreadable(folder: Path, kind: str) -> Path:
    name, write, _ = UNREADABLE[kind]
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / name)
    return folder / name


def _cmyk(path: Path) -> None:
    Image.fromarray(np.dstack([GRAY] * 3)).convert("CMYK").save(path, quality=95)


def _exif_rotated(path: Path) -> None:
    image = Image.fromarray(GRAY)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    image.save(path, exif=exif, quality=95)


# name -> (file name, writer, expected (width, height) after decoding, expected pixels or None)
READABLE: dict[str, tuple[str, Callable[[Path], None], tuple[int, int], np.ndarray | None]] = {
    "jpeg": ("a.jpg", lambda p: Image.fromarray(GRAY).save(p, quality=95), (W, H), None),
    "bmp": ("b.bmp", lambda p: Image.fromarray(GRAY).save(p), (W, H), GRAY),
    "tiff": ("c.tif", lambda p: Image.fromarray(GRAY).save(p), (W, H), GRAY),
    "16-bit": ("d.png", lambda p: Image.fromarray(GRAY.astype(np.uint16) * 257).save(p), (W, H), GRAY),
    "rgba": (
        "e.png",
        lambda p: Image.fromarray(np.dstack([GRAY] * 3 + [np.full_like(GRAY, 255)])).save(p),
        (W, H),
        GRAY,
    ),
    "palette": ("f.png", lambda p: Image.fromarray(GRAY).convert("P").save(p), (W, H), None),
    "cmyk-jpeg": ("g.jpg", _cmyk, (W, H), None),
    "exif-rotated": ("h.jpg", _exif_rotated, (H, W), None),
    "1x1": ("i.png", lambda p: Image.fromarray(np.array([[77]], dtype=np.uint8)).save(p), (1, 1), np.array([[77]])),
    "non-ascii": ("ünïcødé 超声 (1).png", lambda p: Image.fromarray(GRAY).save(p), (W, H), GRAY),
}


@pytest.fixture()
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=4)


# ------------------------------------------------------------------ odd but valid images


@pytest.mark.parametrize("kind", list(READABLE))
def test_odd_images_are_decoded(tmp_path: Path, kind: str) -> None:
    name, write, size, pixels = READABLE[kind]
    path = tmp_path / name
    write(path)
    image = load_image(path)
    assert image.mode == "L"
    assert image.size == size
    if pixels is not None:
        np.testing.assert_array_equal(np.asarray(image), pixels)
    elif kind in ("jpeg", "cmyk-jpeg"):  # lossy, but the same picture
        assert np.abs(np.asarray(image).astype(int) - GRAY).mean() < 8
    elif kind == "palette":  # a 256-colour palette of a gray image is nearly exact
        assert np.abs(np.asarray(image).astype(int) - GRAY).max() <= 8
    elif kind == "exif-rotated":  # displayed upright: the stored pixels turned 90° clockwise
        assert np.abs(np.asarray(image).astype(int) - np.rot90(GRAY, k=-1)).mean() < 8


def test_odd_images_through_dataset_predictor_and_cli(
    tmp_path: Path, predictor: Predictor, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 2, "malignant": 2, "normal": 2}, size=(W, H))
    for name, write, _, _ in READABLE.values():
        write(root / "benign" / name)
    data = UltrasoundDataset.from_folder(root)
    assert data.class_counts() == [2 + len(READABLE), 2, 2]
    sizes, labels = {}, []
    for i in range(len(data)):
        image, label = data[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 1
        sizes[data.paths[i].name] = (image.shape[2], image.shape[1])
        labels.append(label)
    assert labels == [0] * (2 + len(READABLE)) + [1, 1, 2, 2]
    for name, _, size, _ in READABLE.values():
        assert sizes[name] == size
    predictions = list(predictor.predict_folder(root / "benign"))
    assert len(predictions) == 2 + len(READABLE)
    for p in predictions:
        assert abs(sum(p.probabilities.values()) - 1) < 1e-6
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(tiny_checkpoint), str(root / "benign"), "--csv", str(out), "--device", "cpu"]) == 0
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {Path(r["path"]).name for r in rows} == {p.name for p in data.paths if p.parent.name == "benign"}
    assert any("超声" in r["path"] for r in rows)


# ------------------------------------------------------------------ unreadable files


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_file_everywhere(
    tmp_path: Path, kind: str, predictor: Predictor, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 2, "malignant": 2, "normal": 2}, size=(W, H))
    bad = _write_unreadable(root / "benign", kind)
    words = UNREADABLE[kind][2]

    def check(message: str) -> None:
        assert bad.name in message, message
        assert words in message, message
        assert any(fix in message for fix in FIXES), message

    with pytest.raises(DataError) as info:
        load_image(bad)
    check(str(info.value))
    data = UltrasoundDataset.from_folder(root)  # on_error="raise": reading the item raises
    index = data.paths.index(bad)
    with pytest.raises(DataError) as info:
        data[index]
    check(str(info.value))
    with pytest.raises(DataError) as info:
        predictor.predict(bad)
    check(str(info.value))
    with pytest.raises(DataError) as info:
        list(predictor.predict_folder(root))
    check(str(info.value))
    assert main(["predict", str(tiny_checkpoint), str(bad), "--device", "cpu"]) == 2
    check(cli_error_line(capsys, "predict"))


def test_decompression_bomb_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    predictor: Predictor,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 2, "malignant": 2, "normal": 2}, size=(W, H))
    bomb = root / "benign" / "bomb.png"
    Image.fromarray(np.zeros((60, 60), dtype=np.uint8)).save(bomb)  # 3,600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # over 2x the limit: PIL raises
    for call in (lambda: load_image(bomb), lambda: predictor.predict(bomb)):
        with pytest.raises(DataError, match=r"bomb\.png.*decompression-bomb limit.*MAX_IMAGE_PIXELS"):
            call()
    assert main(["predict", str(tiny_checkpoint), str(bomb), "--device", "cpu"]) == 2
    assert "bomb.png" in cli_error_line(capsys, "predict")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000)  # between 1x and 2x: PIL only warns; refused too
    with pytest.raises(DataError, match=r"bomb\.png.*decompression-bomb"):
        load_image(bomb)
    data = UltrasoundDataset.from_folder(root, on_error="skip")
    assert [p.name for p, _ in data.skipped] == ["bomb.png"]
    assert load_image(root / "benign" / "benign (1).png").size == (W, H)  # small images still load


def test_on_error_skip_logs_each_file_and_the_count(
    tmp_path: Path,
    predictor: Predictor,
    tiny_checkpoint: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 3, "malignant": 3, "normal": 3}, size=(W, H))
    bad = [
        _write_unreadable(root / folder, kind)
        for folder, kind in zip(("benign", "malignant", "normal", "normal"), UNREADABLE, strict=True)
    ]
    with caplog.at_level(logging.WARNING):
        data = UltrasoundDataset.from_folder(root, on_error="skip")
    assert data.class_counts() == [3, 3, 3]
    assert sorted(p.name for p, _ in data.skipped) == sorted(p.name for p in bad)
    for path in bad:
        assert path.name in caplog.text
    assert f"Skipped {len(bad)} unreadable image(s) of {9 + len(bad)}" in caplog.text
    assert all(np.isfinite(data[i][0].float().numpy()).all() for i in range(len(data)))

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        predictions = list(predictor.predict_folder(root, on_error="skip"))
    assert len(predictions) == 9
    for path in bad:
        assert path.name in caplog.text
    assert f"Skipped {len(bad)} unreadable image(s)" in caplog.text

    out = tmp_path / "out.csv"
    argv = ["predict", str(tiny_checkpoint), str(root), "--csv", str(out), "--on-error", "skip", "--device", "cpu"]
    assert main(argv) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + 9
    assert main(["evaluate", str(tiny_checkpoint), str(root), "--on-error", "skip", "--device", "cpu"]) == 0
    assert "n=9" in capsys.readouterr().out
    assert main(["evaluate", str(tiny_checkpoint), str(root), "--device", "cpu"]) == 2  # default: raise
    assert any(p.name in cli_error_line(capsys, "evaluate") for p in bad)


def test_a_folder_with_nothing_readable_is_an_error(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "incoming"
    _write_unreadable(folder, "text")
    argv = ["predict", str(tiny_checkpoint), str(folder), "--on-error", "skip", "--device", "cpu"]
    assert main(argv) == 2
    assert "No image was classified" in cli_error_line(capsys, "predict")
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "empty"), "--device", "cpu"]) == 2
    assert "No image was classified" in cli_error_line(capsys, "predict")


# ------------------------------------------------------------------ masks


def test_mask_of_another_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 2, "malignant": 2, "normal": 2}, size=(W, H))
    mask = root / "benign" / "benign (1)_mask.png"
    big = np.zeros((H * 2, W * 2), dtype=np.uint8)
    big[4:12, 8:20] = 255
    Image.fromarray(big).save(mask)  # the same aspect ratio at twice the size: a rescaled export
    data = UltrasoundDataset.from_folder(root)
    with caplog.at_level(logging.WARNING):
        merged = data.load_mask(0)
    assert merged is not None and merged.shape == (H, W)
    assert merged[2:6, 4:10].all() and merged.sum() == 4 * 6
    assert "benign (1)_mask.png" in caplog.text and "resizing" in caplog.text
    Image.fromarray(np.zeros((H, W * 3), dtype=np.uint8)).save(mask)  # another aspect ratio: another image's
    with pytest.raises(DataError, match=r"benign \(1\)_mask\.png.*72x16.*24x16.*aspect ratio.*Re-export"):
        data.load_mask(0)
    with pytest.raises(DataError, match=r"x_mask\.png.*Re-export"):
        Image.fromarray(np.zeros((5, 50), dtype=np.uint8)).save(tmp_path / "x_mask.png")
        load_mask([tmp_path / "x_mask.png"], (W, H))


# ------------------------------------------------------------------ folders


def test_folder_errors_everywhere(
    tmp_path: Path, predictor: Predictor, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 2, "malignant": 2, "normal": 2}, size=(W, H))
    missing = tmp_path / "no such folder"
    (root / "Benign_old").mkdir()
    cases = [
        (root, "Benign_old", r"\['Benign_old'\].*not known classes.*Rename or move"),
        (missing, "no such folder", r"no such folder.*does not exist.*sub-folder per class"),
    ]
    for target, needle, pattern in cases:
        with pytest.raises(DataError, match=pattern):
            UltrasoundDataset.from_folder(target)
        out = tmp_path / "run"
        assert main(["train", str(target), "--out", str(out), "--pretrained", "none", "--device", "cpu"]) == 2
        assert needle in cli_error_line(capsys, "train")
        assert main(["evaluate", str(tiny_checkpoint), str(target), "--device", "cpu"]) == 2
        assert needle in cli_error_line(capsys, "evaluate")
    (root / "Benign_old").rmdir()
    for image in (root / "normal").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"normal.*holds no image.*add images or remove the empty folder"):
        UltrasoundDataset.from_folder(root)
    assert main(["evaluate", str(tiny_checkpoint), str(root), "--device", "cpu"]) == 2
    assert "normal" in cli_error_line(capsys, "evaluate")
    with pytest.raises(DataError, match=r"no such folder.*does not exist"):
        list(predictor.predict_folder(missing))
    assert main(["predict", str(tiny_checkpoint), str(missing / "scan.png"), "--device", "cpu"]) == 2
    assert "scan.png" in cli_error_line(capsys, "predict")


def test_non_ascii_paths_everywhere(tmp_path: Path, predictor: Predictor, tiny_checkpoint: Path) -> None:
    root = make_image_folder(tmp_path / "données échographie 超声", {"benign": 2, "malignant": 2, "normal": 2})
    name = "ünïcødé 超声 (3).png"
    Image.fromarray(GRAY).save(root / "malignant" / name)
    data = UltrasoundDataset.from_folder(root)
    assert name in [p.name for p in data.paths]
    assert data[data.paths.index(root / "malignant" / name)][0].shape == (1, H, W)
    assert predictor.predict(root / "malignant" / name).path == str(root / "malignant" / name)
    out = tmp_path / "résultats.csv"
    assert main(["predict", str(tiny_checkpoint), str(root), "--csv", str(out), "--device", "cpu"]) == 0
    assert name in out.read_text(encoding="utf-8")


def test_numpy_nan_and_infinity(predictor: Predictor) -> None:
    image = np.linspace(0, 1, H * W).reshape(H, W)
    odd = image.copy()
    odd[0, :3] = [np.nan, np.inf, -np.inf]
    clean = image.copy()
    clean[0, :3] = [0.0, 1.0, 0.0]
    # one infinite pixel does not turn a [0, 1] image into a [0, 255] one (all black)
    assert torch.equal(predictor.preprocess(odd), predictor.preprocess(clean))
    probabilities = predictor.predict(odd).probabilities
    assert np.isfinite(list(probabilities.values())).all()


# ------------------------------------------------------------------ a real process


def test_cli_user_error_in_a_subprocess(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """One error line on stderr, exit status 2, no traceback: seen from outside the process."""
    bad = _write_unreadable(tmp_path / "scans", "non-ascii")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "breastus.cli", "predict", str(tiny_checkpoint), str(bad), "--device", "cpu"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("breastus predict: error: ")
    assert bad.name in lines[0] and "empty (0 bytes)" in lines[0]
    assert done.stdout == ""
