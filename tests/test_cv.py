"""Group-aware cross-validation: folds, cv.json, out-of-fold predictions, bootstrap, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breastus import ConfigError, DataError, TrainConfig, UltrasoundDataset, compute_metrics
from breastus.cli import main
from breastus.evaluation import bootstrap_ci, check_groups_within_folds, cross_validate, resolve_groups
from breastus.evaluation._cv import fast_headline, headline

NAMES = ["benign", "malignant", "normal"]
# Real BUSI images with known duplicates: the benign (433) / malignant (145) exact copy, a
# benign/benign/malignant triple, a benign/normal pair and three benign pairs; plus singletons.
DUPLICATES = [
    "benign/benign (433).png",
    "malignant/malignant (145).png",
    "benign/benign (42).png",
    "benign/benign (131).png",
    "malignant/malignant (51).png",
    "benign/benign (269).png",
    "normal/normal (1).png",
    "benign/benign (1).png",
    "benign/benign (318).png",
    "benign/benign (2).png",
    "benign/benign (319).png",
]
# Images without any duplicate in the full BUSI audit.
SINGLETONS = [f"benign/benign ({i}).png" for i in (20, 21, 22, 23, 24, 26)]
SINGLETONS += [f"malignant/malignant ({i}).png" for i in range(20, 28)]
SINGLETONS += [f"normal/normal ({i}).png" for i in (2, 3, 4, 6, 7, 8, 9, 10)]

FAST = TrainConfig(pretrained="none", epochs=1, image_size=32, batch_size=16, progress=False, device="cpu")


@pytest.fixture(scope="module")
def busi_subset(busi_root: Path) -> UltrasoundDataset:
    full = UltrasoundDataset.from_folder(busi_root)
    wanted = {busi_root / p for p in DUPLICATES + SINGLETONS}
    return full.subset([i for i, p in enumerate(full.paths) if p in wanted])


@pytest.fixture(scope="module")
def busi_cv(busi_subset: UltrasoundDataset, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("cv")
    return cross_validate(busi_subset, out, FAST, folds=2, groups="audit", bootstrap=200), out


@pytest.mark.busi
@pytest.mark.slow
def test_cv_writes_cv_json_with_fold_and_summary_metrics(busi_cv) -> None:  # type: ignore[no-untyped-def]
    result, out = busi_cv
    report = json.loads((out / "cv.json").read_text())
    assert len(report["folds"]) == 2
    for fold in report["folds"]:
        assert {"accuracy", "macro_f1", "macro_auc", "sensitivity", "specificity", "n_test"} <= set(fold)
        assert (out / f"fold-{fold['fold']}" / "best.pt").is_file()
    for part in ("mean", "std"):
        assert {"accuracy", "macro_f1", "macro_auc", "sensitivity", "specificity"} <= set(report[part])
        assert set(report[part]["sensitivity"]) == set(NAMES) == set(report[part]["specificity"])
    folds = [f["accuracy"] for f in report["folds"]]
    assert report["mean"]["accuracy"] == pytest.approx(np.mean(folds))
    assert report["std"]["accuracy"] == pytest.approx(np.std(folds, ddof=1))
    low, high = report["ci95"]["accuracy"]
    assert 0 <= low <= report["pooled"]["accuracy"] <= high <= 1
    assert report["bootstrap"]["resamples"] == 200
    for name in ("confusion_matrix", "roc", "reliability", "training_curves"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    assert result.pooled.n == len(DUPLICATES) + len(SINGLETONS)


@pytest.mark.busi
@pytest.mark.slow
def test_cv_keeps_every_duplicate_group_in_one_fold(busi_cv) -> None:  # type: ignore[no-untyped-def]
    result, out = busi_cv
    with (out / "oof_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["path"] for r in rows) == sorted(DUPLICATES + SINGLETONS)  # every image predicted once
    fold_of = {r["path"]: r["fold"] for r in rows}
    folds_per_group: dict[str, set[str]] = {}
    for r in rows:
        folds_per_group.setdefault(r["group"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in folds_per_group.values())
    assert fold_of["benign/benign (433).png"] == fold_of["malignant/malignant (145).png"]
    assert len({fold_of[p] for p in DUPLICATES[2:5]}) == 1
    groups = json.loads((out / "cv.json").read_text())["groups"]
    assert groups["source"] == "audit" and groups["threshold"] == 6
    multi = sorted(sorted(g) for g in groups["multi_image_groups"])
    assert sorted(["benign/benign (433).png", "malignant/malignant (145).png"]) in multi
    assert len(multi) == 5 and groups["n_groups"] == len(SINGLETONS) + 5
    assert np.isfinite(result.probabilities).all()
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.busi
@pytest.mark.slow
def test_cv_resume_reuses_finished_folds(busi_cv, busi_subset: UltrasoundDataset) -> None:  # type: ignore[no-untyped-def]
    result, out = busi_cv
    stamp = (out / "fold-1" / "best.pt").stat().st_mtime_ns
    again = cross_validate(busi_subset, out, FAST, folds=2, bootstrap=0, plots=False, resume=True)
    assert (out / "fold-1" / "best.pt").stat().st_mtime_ns == stamp  # not trained again
    np.testing.assert_allclose(again.probabilities, result.probabilities)
    assert again.ci95 == {} and again.folds == result.folds


def test_resolve_groups_modes(tiny_folder: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    naive, source = resolve_groups(data, "none")
    assert source == "none" and len(set(naive)) == len(data)
    given_groups = ["p1", "p1"] + [None] * (len(data) - 2)
    groups, source = resolve_groups(data, given_groups)
    assert source == "given" and groups[0] == groups[1] and len(set(groups)) == len(data) - 1
    with pytest.raises(ConfigError, match="groups must be"):
        resolve_groups(data, "patients")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="one entry per image"):
        resolve_groups(data, ["a"])


def test_audit_groups_merge_with_manifest_groups(tiny_folder: Path) -> None:
    (tiny_folder / "normal" / "copy.png").write_bytes((tiny_folder / "benign" / "benign (1).png").read_bytes())
    rows = ["path,label,group"]
    rows += [f"benign/benign ({i}).png,benign,patient-{i // 2}" for i in range(1, 5)]
    rows += ["normal/copy.png,normal,", "malignant/malignant (1).png,malignant,patient-9"]
    (tiny_folder / "m.csv").write_text("\n".join(rows) + "\n")
    data = UltrasoundDataset.from_manifest(tiny_folder / "m.csv")
    groups, source = resolve_groups(data, "audit")
    assert source == "audit+dataset"
    # benign (1) is patient-0 alone, but its exact copy joins it; benign (2)/(3) are patient-1.
    assert groups[0] == groups[4] and groups[1] == groups[2] and groups[0] != groups[1]
    assert len(set(groups)) == 4


def test_check_groups_within_folds() -> None:
    check_groups_within_folds(["a", "a", "b"], [1, 1, 2])
    with pytest.raises(DataError, match="'a' has images in folds 1 and 2"):
        check_groups_within_folds(["a", "a", "b"], [1, 2, 2])


def test_cv_rejects_too_many_folds(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folds"):
        cross_validate(tiny_folder, tmp_path, FAST, folds=100, groups="none")


@st.composite
def predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(3, 40))
    labels = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    logits = np.array(draw(st.lists(st.floats(-4, 4, width=32), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    logits = np.round(logits, 1)  # ties, as real saturated probabilities have
    p = np.exp(logits)
    return labels, p / p.sum(axis=1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(predictions())
def test_fast_headline_matches_scikit_learn(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, p = data
    fast = fast_headline(labels, p, NAMES)
    slow = headline(compute_metrics(labels, p, NAMES), p, labels)

    def close(a: object, b: object) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict) and a.keys() == b.keys()
            for key in a:
                close(a[key], b[key])
        elif isinstance(a, float) or isinstance(b, float):
            assert a is not None and b is not None
            assert a == pytest.approx(b, abs=1e-9)
        else:
            assert a == b

    close(fast, slow)


def test_bootstrap_is_seeded_and_resamples_groups() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    logits = rng.normal(size=(90, 3)) + np.eye(3)[labels]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    first = bootstrap_ci(labels, p, NAMES, n_resamples=100, seed=3)
    assert first == bootstrap_ci(labels, p, NAMES, n_resamples=100, seed=3)
    assert first != bootstrap_ci(labels, p, NAMES, n_resamples=100, seed=4)
    # Ten copies of each image: image-level resampling pretends 10x the evidence; groups do not.
    many_labels, many_p = np.repeat(labels, 10), np.repeat(p, 10, axis=0)
    naive = bootstrap_ci(many_labels, many_p, NAMES, n_resamples=100, seed=0)["accuracy"]
    grouped = bootstrap_ci(many_labels, many_p, NAMES, [str(i // 10) for i in range(900)], 100, seed=0)["accuracy"]
    assert grouped[1] - grouped[0] > 2 * (naive[1] - naive[0])
    with pytest.raises(ConfigError):
        bootstrap_ci(labels, p, NAMES, n_resamples=0)


def test_cv_cli_on_a_tiny_folder(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cv"
    argv = ["cv", str(tiny_folder), "--folds", "2", "--out", str(out), "--groups", "none", "--pretrained", "none"]
    argv += ["--epochs", "1", "--image-size", "32", "--device", "cpu", "--no-progress", "--bootstrap", "50"]
    assert main([*argv, "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "fold 1:" in text and "Pooled out-of-fold predictions (n=30)" in text
    report = json.loads((out / "cv.json").read_text())
    assert report["groups"]["source"] == "none" and report["groups"]["multi_image_groups"] == []
    assert report["config"]["image_size"] == 32 and not (out / "plots").exists()
