"""predict_archive on a real local Ray: same probabilities as the Predictor, error rows, resume, killed worker."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from breastus import ConfigError, DataError, Predictor  # noqa: E402
from breastus.cli import main  # noqa: E402
from breastus.prediction import ArchiveResult, predict_archive  # noqa: E402
from breastus.prediction._archive_inputs import archive_paths  # noqa: E402
from breastus.prediction._ray import _ArchiveWorker, _predict_archive  # noqa: E402

CLASSES = ("benign", "malignant", "normal")
PROBABILITIES = [f"p_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    """One local Ray for the whole file (start-up is paid once)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(busi_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A folder of 20 real BUSI images (symlinks) and 2 corrupt files, and a CSV manifest of it."""
    folder = tmp_path_factory.mktemp("archive") / "scans"
    folder.mkdir()
    good = []
    for name, count in (("benign", 7), ("malignant", 7), ("normal", 6)):
        for i in range(1, count + 1):
            link = folder / f"{name} ({i}).png"
            link.symlink_to(busi_root / name / f"{name} ({i}).png")
            good.append(str(link))
    truncated = folder / "truncated.png"
    truncated.write_bytes((busi_root / "benign" / "benign (8).png").read_bytes()[:300])
    text = folder / "notes.png"
    text.write_text("not an image")
    manifest = folder.parent / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for path in [*good, str(truncated), str(text)]:
            writer.writerow([os.path.relpath(path, manifest.parent), "benign"])  # relative to the manifest
    return {"folder": folder, "manifest": manifest, "good": good, "bad": [str(truncated), str(text)]}


def _read(out: Path):  # type: ignore[no-untyped-def]
    return pq.read_table(out).to_pandas()


def _assert_matches_predictor(checkpoint: Path, frame, good: list[str]) -> None:  # type: ignore[no-untyped-def]
    ok = frame[frame["error"].isna()].set_index("path").loc[good]
    expected = Predictor.from_checkpoint(checkpoint, device="cpu").predict_proba(good)
    np.testing.assert_allclose(ok[PROBABILITIES].to_numpy(), expected, atol=1e-5, rtol=0)
    assert list(ok["label"]) == [CLASSES[i] for i in expected.argmax(axis=1)]


@pytest.mark.busi
@pytest.mark.slow
def test_rows_match_the_predictor_and_unreadable_files_are_rows(local_ray, archive, tiny_checkpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "predictions.parquet"
    result = predict_archive(tiny_checkpoint, archive["manifest"], out, num_workers=2, batch_size=4, rows_per_part=8)
    assert isinstance(result, ArchiveResult)
    assert (result.total, result.skipped, result.predicted, result.failed, result.num_workers) == (22, 0, 20, 2, 2)
    assert 0 < result.startup_seconds < result.seconds and result.images_per_second == 22 / result.seconds

    frame = _read(out)
    assert list(frame.columns) == ["path", "label", *PROBABILITIES, "error"]
    assert len(frame) == 22 and frame["path"].is_unique
    good, bad = archive["good"], archive["bad"]
    failed = frame[frame["error"].notna()].set_index("path")
    assert sorted(failed.index) == sorted(bad)  # manifest paths are taken relative to the manifest's folder
    assert failed[["label", *PROBABILITIES]].isna().all().all()
    assert all(Path(p).name in failed.loc[p, "error"] for p in failed.index)  # the message names the file
    np.testing.assert_allclose(frame[frame["error"].isna()][PROBABILITIES].sum(axis=1), 1.0, atol=1e-9)
    _assert_matches_predictor(tiny_checkpoint, frame, good)

    parts = sorted(p.name for p in out.iterdir())
    assert len(parts) >= 2 and all(p.startswith("part-") and p.endswith(".parquet") for p in parts)  # no temp file


@pytest.mark.busi
@pytest.mark.slow
def test_resume_predicts_only_missing_rows_and_retries_errors(
    local_ray, archive, tiny_checkpoint, tmp_path, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "predictions.parquet"
    good, bad = archive["good"], archive["bad"]
    first = predict_archive(tiny_checkpoint, [*good[:12], bad[0]], out, num_workers=1, batch_size=4)
    assert (first.predicted, first.failed, first.num_workers) == (12, 1, 1)

    # the second run goes through the command line, on the whole folder
    argv = ["predict", str(tiny_checkpoint), str(archive["folder"]), "--engine", "ray", "--out", str(out)]
    assert main([*argv, "--num-workers", "2", "--batch-size", "4"]) == 0
    # 12 successful rows are skipped; 8 new images, 1 new corrupt file and the retried corrupt file run again
    printed = capsys.readouterr().out
    assert "Wrote 10 row(s)" in printed and "(8 predicted, 2 unreadable)" in printed
    assert "12 already there were skipped" in printed
    frame = _read(out)
    assert len(frame) == 22 and frame["path"].is_unique  # the retried error row replaced the older one
    assert sorted(frame.loc[frame["error"].notna(), "path"]) == sorted(bad)
    _assert_matches_predictor(tiny_checkpoint, frame, good)

    third = predict_archive(tiny_checkpoint, good[:5], out)  # all done: Ray is not even asked
    assert (third.total, third.skipped, third.written, third.num_workers, third.startup_seconds) == (5, 5, 0, 0, 0.0)
    assert len(_read(out)) == 22
    assert main([*argv, "--no-resume"]) == 2  # refused before any work
    assert "resume=False" in capsys.readouterr().err


@pytest.mark.busi
@pytest.mark.slow
def test_a_killed_worker_still_writes_every_row_once(local_ray, archive, tiny_checkpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "killed-once"

    class DiesOnce(_ArchiveWorker):  # defined here so that Ray pickles it by value
        calls = 0

        def __call__(self, batch):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 2:  # mid-run: this actor already returned one batch
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)  # the actor process dies; Ray restarts it and retries the batch
            return super().__call__(batch)

    out = tmp_path / "predictions.parquet"
    result = _predict_archive(
        tiny_checkpoint,
        archive["folder"],
        out,
        num_workers=1,  # one actor: its restart is the only way the run can finish
        batch_size=4,
        backend=None,
        device="cpu",
        tta=False,
        threads_per_worker=1,
        ray_address=None,
        resume=True,
        rows_per_part=1000,
        worker=DiesOnce,
    )
    assert marker.exists()  # a worker really died
    assert (result.predicted, result.failed) == (20, 2)
    frame = _read(out)
    assert len(frame) == 22 and frame["path"].is_unique
    _assert_matches_predictor(tiny_checkpoint, frame, archive["good"])


# --- No Ray workers needed below: inputs, validation and output checks ---


def test_cli_engine_ray_needs_out(tiny_checkpoint, archive, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["predict", str(tiny_checkpoint), str(archive["folder"]), "--engine", "ray"]) == 2
    assert "--out" in capsys.readouterr().err


def test_archive_paths_from_folders_manifests_and_files(archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from_folder = archive_paths(archive["folder"])
    assert len(from_folder) == 22 and set(archive["good"]) <= set(from_folder)
    from_manifest = archive_paths(archive["manifest"])
    assert from_manifest == [*archive["good"], *archive["bad"]]  # relative paths resolved from the manifest's folder
    assert archive_paths([archive["good"][0], "missing.png", archive["good"][0]]) == [archive["good"][0], "missing.png"]

    no_path = tmp_path / "labels.csv"
    no_path.write_text("image,label\na.png,benign\n")
    with pytest.raises(DataError, match=r"labels\.csv.*no 'path' column"):
        archive_paths(no_path)
    with pytest.raises(DataError, match=r"Manifest .*missing\.csv.* does not exist"):
        archive_paths(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"scnas.*neither a folder, a CSV manifest nor an image file"):
        archive_paths(tmp_path / "scnas")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No image to predict"):
        archive_paths(empty)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["a.png", "b.png", "c/d.png", "e f.png", "ü.png"]), min_size=1, max_size=12))
def test_archive_paths_keep_first_occurrence_order(names: list[str]) -> None:
    paths = archive_paths(names)
    assert paths == list(dict.fromkeys(names))
    assert len(set(paths)) == len(paths)


def test_invalid_outputs_and_parameters(tiny_checkpoint, archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = archive["good"][:1]
    a_file = tmp_path / "out.parquet"
    a_file.write_text("x")
    with pytest.raises(DataError, match=r"out\.parquet.*is a file"):
        predict_archive(tiny_checkpoint, good, a_file)
    with pytest.raises(ConfigError, match=r"num_workers must be an int >= 1\. Got 0"):
        predict_archive(tiny_checkpoint, good, tmp_path / "o.parquet", num_workers=0)
    with pytest.raises(ConfigError, match="backend='torch' applies to checkpoints only"):
        predict_archive(tmp_path / "model.onnx", good, tmp_path / "o.parquet", backend="torch")


def test_output_of_other_classes_or_without_resume_is_refused(tiny_checkpoint, archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    out = tmp_path / "old.parquet"
    out.mkdir()
    pq.write_table(
        pa.table({"path": ["x.png"], "label": ["cyst"], "p_cyst": [1.0], "error": [None]}), out / "part-0.parquet"
    )
    (out / ".part-1.parquet.tmp").write_bytes(b"half a file")
    with pytest.raises(ConfigError, match="other classes"):
        predict_archive(tiny_checkpoint, archive["good"][:1], out)
    assert not (out / ".part-1.parquet.tmp").exists()  # the leftover of an interrupted write is removed
    with pytest.raises(DataError, match="resume=False"):
        predict_archive(tiny_checkpoint, archive["good"][:1], out, resume=False)
    shutil.rmtree(out)


def test_worker_rows_from_an_exported_onnx_model(tiny_checkpoint, archive, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What each actor runs, without Ray: an exported .onnx file gives the checkpoint's probabilities."""
    pytest.importorskip("onnxruntime")
    from breastus.export import export_model
    from breastus.prediction._archive_inputs import load_predictor
    from breastus.prediction._archive_rows import predict_rows

    onnx_file = export_model(tiny_checkpoint, tmp_path / "model.onnx")
    paths = [*archive["good"][:5], *archive["bad"]]
    table = predict_rows(load_predictor(onnx_file, batch_size=2), paths).to_pandas()
    assert list(table["path"]) == paths and table["error"].notna().tolist() == [False] * 5 + [True] * 2
    expected = Predictor.from_checkpoint(tiny_checkpoint, device="cpu").predict_proba(archive["good"][:5])
    np.testing.assert_allclose(table[PROBABILITIES].to_numpy()[:5], expected, atol=1e-5, rtol=0)


def test_more_workers_than_a_local_ray_has_cpus_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A Ray started for the run never grows: asking for more actors than CPUs would wait forever."""
    from types import SimpleNamespace

    from breastus.prediction._archive_rows import _PartWriter
    from breastus.prediction._ray import _run

    two_cpus = SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    with pytest.raises(ConfigError, match=r"num_workers=3 actors need 3 CPU\(s\) but the Ray cluster has 2"):
        _run(two_cpus, ["a.png"], _PartWriter(tmp_path, 10), _ArchiveWorker, "best.pt", None, 4, "cpu", False, 1, 3,
             local=True)  # fmt: skip
