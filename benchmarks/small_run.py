"""Small-run overhead: ``breastus train`` on a 96-image subset, 2 epochs, 224 px, against a seed-style loop.

Both run as fresh child processes, so interpreter start-up and imports count, as they do for
a user: (a) the seed-style loop (``seed_loop.py``: plain PyTorch, PNGs decoded every epoch,
validation every epoch, test metrics at the end) on the same train/validation/test images
that (b) ``breastus train MANIFEST --epochs 2 --pretrained none`` split off (its
``split.json``), with ResNet-18 from scratch in both. The two are run alternately
``--repeats`` times; the minimum of each is compared (the CPU is shared). Also measured in
children: the import time of ``breastus.cli`` against ``torch`` + ``torchvision``.

    nice -n 5 python benchmarks/small_run.py --json benchmarks/results/small_run.json

Prints the figures, the ratio and the CPU, and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))


def seed_child(manifest: str, split_file: str, epochs: int, size: int) -> None:
    """The seed-style run (child process): train, validate every epoch, evaluate the test images."""
    import numpy as np
    import torch
    from seed_loop import FolderDataset, baseline_transforms
    from sklearn.metrics import f1_score, roc_auc_score
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import models

    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = sorted({r["label"] for r in rows})
    split = json.loads(Path(split_file).read_text(encoding="utf-8"))
    by_path = {r["path"]: names.index(r["label"]) for r in rows}
    paths = [Path(p) for p in split["paths"]]

    def part(name: str) -> tuple[list[Path], list[int]]:
        chosen = [paths[i] for i in split[name]]
        return chosen, [by_path[str(p)] for p in chosen]

    torch.manual_seed(0)
    train_tf, eval_tf = baseline_transforms(size)
    loader = DataLoader(FolderDataset(*part("train"), train_tf), batch_size=32, shuffle=True)
    model = models.resnet18(num_classes=len(names))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()

    def predict(name: str) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        out, seen = [], []
        with torch.no_grad():
            for images, labels in DataLoader(FolderDataset(*part(name), eval_tf), batch_size=32):
                out.append(torch.softmax(model(images), dim=1))
                seen.append(labels)
        return torch.cat(out).numpy(), torch.cat(seen).numpy()

    for epoch in range(epochs):
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            loss.item()
        probabilities, labels = predict("val")
        f1 = f1_score(labels, probabilities.argmax(1), average="macro")
        print(f"epoch {epoch + 1}: val macro-F1 {f1:.3f}", flush=True)
    probabilities, labels = predict("test")
    try:
        auc = roc_auc_score(labels, probabilities, multi_class="ovr", labels=list(range(len(names))))
    except ValueError:
        auc = float("nan")
    print(f"test accuracy {(probabilities.argmax(1) == labels).mean():.3f}, macro-AUC {auc:.3f}")


def make_manifest(path: Path, n_images: int, seed: int = 0) -> None:
    """A CSV manifest of ``n_images`` BUSI images, stratified by class (seeded)."""
    import numpy as np

    from breastus import UltrasoundDataset

    data = UltrasoundDataset.from_folder(DATA)
    labels = np.asarray(data.labels)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    counts = np.bincount(labels, minlength=len(data.class_names))
    for label, count in enumerate(counts):
        take = round(n_images * count / len(labels)) if label < len(counts) - 1 else n_images - len(chosen)
        chosen += list(rng.choice(np.flatnonzero(labels == label), take, replace=False))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i in sorted(chosen):
            writer.writerow([str(data.paths[i]), data.class_names[data.labels[i]]])


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, (done.stdout + done.stderr).strip().splitlines()[-1]


def import_seconds(statement: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each (minimum kept)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "small_run.json")
    parser.add_argument("--seed-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_child:
        manifest, split_file, epochs, size = args.seed_child
        seed_child(manifest, split_file, int(epochs), int(size))
        return

    from run_record import run_header, write_result

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    result: dict[str, Any] = run_header(args, skip=("seed_child",))
    print(f"CPU: {result['cpu']['model']} ({os.cpu_count()} CPUs); load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="breastus-small-run-") as scratch_name:
        scratch = Path(scratch_name)
        manifest = scratch / "subset.csv"
        make_manifest(manifest, args.images)
        runs: dict[str, list[float]] = {"seed_loop": [], "breastus_train": []}
        tails: dict[str, str] = {}
        for repeat in range(args.repeats):
            run_dir = scratch / f"run{repeat}"
            train = [sys.executable, "-m", "breastus.cli", "train", str(manifest), "--out", str(run_dir)]
            train += ["--epochs", str(args.epochs), "--image-size", str(args.size), "--pretrained", "none"]
            seconds, tails["breastus_train"] = timed([*train, "--no-progress"], env)
            runs["breastus_train"].append(seconds)
            print(f"  breastus train: {seconds:.1f} s", flush=True)
            child = [sys.executable, str(Path(__file__).resolve()), "--seed-child", str(manifest)]
            child += [str(run_dir / "split.json"), str(args.epochs), str(args.size)]
            seconds, tails["seed_loop"] = timed(child, env)
            runs["seed_loop"].append(seconds)
            print(f"  seed-style loop: {seconds:.1f} s", flush=True)
        result["imports_seconds"] = {
            "torch_torchvision": import_seconds("import torch, torchvision", env),
            "breastus_cli": import_seconds("import breastus.cli._main", env),
        }
    result["runs_seconds"] = runs
    result["last_lines"] = tails
    best = {k: min(v) for k, v in runs.items()}
    result["best_seconds"] = best
    result["ratio_breastus_to_seed"] = best["breastus_train"] / best["seed_loop"]
    print(
        f"{args.images} images, {args.epochs} epochs, {args.size} px: breastus train {best['breastus_train']:.1f} s, "
        f"seed-style loop {best['seed_loop']:.1f} s, ratio {result['ratio_breastus_to_seed']:.2f} "
        f"(imports: torch+torchvision {result['imports_seconds']['torch_torchvision']:.1f} s, "
        f"breastus.cli {result['imports_seconds']['breastus_cli']:.1f} s)"
    )
    write_result(args.json, result)


if __name__ == "__main__":
    main()
