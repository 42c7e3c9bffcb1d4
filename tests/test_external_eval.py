"""Evaluation on external data: subsets of the classes, manifests, malignant-vs-rest metrics, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder

from breastus import ConfigError, TrainConfig, Trainer, UltrasoundDataset, compute_binary_metrics
from breastus.cli import main
from breastus.evaluation import sensitivity_at_specificity


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 trained for 2 epochs at 32 px on a tiny synthetic three-class folder."""
    root = tmp_path_factory.mktemp("external")
    data = UltrasoundDataset.from_folder(
        make_image_folder(root / "train", {"benign": 12, "malignant": 10, "normal": 8})
    )
    config = TrainConfig(pretrained="none", epochs=2, image_size=32, batch_size=8, progress=False, device="cpu")
    trainer = Trainer(config, root / "run")
    trainer.fit(data.subset(range(0, 30, 2)), data.subset(range(1, 30, 2)))
    return trainer.best_checkpoint_path


def test_evaluate_cli_on_a_folder_with_only_benign_and_malignant(trained: Path, tmp_path: Path) -> None:
    external = make_image_folder(tmp_path / "ext", {"benign": 7, "malignant": 5}, seed=3)
    out = tmp_path / "out"
    argv = ["evaluate", str(trained), str(external), "--json", str(out / "m.json"), "--csv", str(out / "p.csv")]
    assert main([*argv, "--plots", str(out / "plots"), "--device", "cpu"]) == 0
    metrics = json.loads((out / "m.json").read_text())
    assert metrics["n"] == 12
    assert metrics["auc"]["normal"] is None and metrics["sensitivity"]["normal"] is None
    binary = metrics["binary"]
    assert binary["positive"] == "malignant" and binary["n_positive"] == 5 and binary["n_negative"] == 7
    assert 0 <= binary["auc"] <= 1 and binary["target_specificity"] == 0.9
    assert binary["specificity_at_threshold"] >= 0.9
    assert binary["negative"] == "benign" and binary["n_two_class"] == 12 and binary["two_class_accuracy"] is not None
    assert 0 <= metrics["ece"] <= 1
    for name in ("confusion_matrix", "roc", "reliability", "training_curves"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    with (out / "p.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 12


def test_evaluate_cli_on_a_manifest(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    external = make_image_folder(tmp_path / "ext", {"benign": 4, "malignant": 4}, seed=5)
    rows = ["path,label"] + [
        f"{p.relative_to(external).as_posix()},{p.parent.name}" for p in sorted(external.glob("*/*).png"))
    ]
    (external / "external.csv").write_text("\n".join(rows) + "\n")
    argv = ["evaluate", str(trained), str(external / "external.csv"), "--json", str(tmp_path / "m.json")]
    assert main([*argv, "--specificity", "0.75", "--device", "cpu"]) == 0
    assert "malignant vs rest (n=8, 4 positive)" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["binary"]["target_specificity"] == 0.75
    assert main(["evaluate", str(trained), str(external / "external.csv"), "--positive", "cyst"]) == 2


@pytest.mark.busi
@pytest.mark.slow
def test_evaluate_on_breast_lesions_usg_sample(trained: Path, breast_root: Path, tmp_path: Path) -> None:
    """Real external data: RGB / RGBA / grayscale PNGs of two hospitals' classes, via a manifest."""
    picks = [f"benign/case{n:03d}.png" for n in (1, 2, 3, 4, 6)] + ["normal/case045.png"]
    picks += [f"malignant/{p.name}" for p in sorted((breast_root / "malignant").glob("case*[0-9].png"))[:5]]
    rows = ["path,label"] + [f"{breast_root / p},{p.split('/')[0]}" for p in picks]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    assert main(["evaluate", str(trained), str(tmp_path / "m.csv"), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 11 and metrics["binary"]["n_positive"] == 5
    assert metrics["binary"]["n_two_class"] == 10  # the normal image is left out of benign-vs-malignant


def test_binary_metrics_by_hand() -> None:
    names = ["benign", "malignant", "normal"]
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.3, 0.6, 0.1]])
    m = compute_binary_metrics([0, 1, 1, 2, 0], p, names)
    # malignant scores: positives 0.7, 0.4; negatives 0.2, 0.3, 0.6 -> 5 of 6 pairs ordered.
    assert m.auc == pytest.approx(5 / 6)
    # Specificity >= 0.9 allows no false positive: threshold above 0.6 catches 0.7 only.
    assert m.sensitivity_at_specificity == pytest.approx(0.5) and m.threshold == pytest.approx(0.7)
    # benign vs malignant among the four images of those classes: right, right, wrong, wrong.
    assert m.two_class_accuracy == pytest.approx(0.5) and m.n_two_class == 4
    only_benign = compute_binary_metrics([0, 0], p[:2], names)
    assert only_benign.auc is None and only_benign.sensitivity_at_specificity is None
    with pytest.raises(ConfigError, match="positive"):
        compute_binary_metrics([0], p[:1], names, positive="cyst")
    with pytest.raises(ConfigError, match="specificity"):
        compute_binary_metrics([0], p[:1], names, specificity=1.0)


def test_sensitivity_at_specificity_agrees_with_a_brute_force_search() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.random(40) < 0.4
        scores = np.round(rng.random(40), 1)  # many ties
        if truth.all() or not truth.any():
            continue
        sensitivity, _, reached = sensitivity_at_specificity(truth, scores, 0.9)
        best = 0.0
        for t in np.unique(np.concatenate([scores, [np.inf]])):
            predicted = scores >= t
            if (~predicted[~truth]).mean() >= 0.9:
                best = max(best, predicted[truth].mean())
        assert sensitivity == pytest.approx(best)
        assert reached is not None and reached >= 0.9
