"""One real search per kind of input of the ``files`` task, on data sets bundled with
scikit-learn written out as the files a user would have:

- a CSV for classification (breast cancer, 569 x 30, label ``diagnosis`` as words),
- a CSV for regression (diabetes, 442 x 10, label ``progression``: whole numbers, so
  ``task.kind=regression`` says what they are),
- a ``.npz`` of arrays (wine, 178 x 13),
- an image folder (the 8x8 digits as PNG files, one folder per digit, 1,797 images).

    python benchmarks/own_data_search.py [--trials 8] [--dir DIR]

Each search runs the ``neuromosaic`` command (random strategy, default family) in its own folder;
the best trial's validation and test score are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_inputs(root: Path) -> dict[str, list[str]]:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine

    cancer = load_breast_cancer()
    with open(root / "cancer.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*cancer.feature_names, "diagnosis"])
        for row, label in zip(cancer.data, cancer.target, strict=True):
            writer.writerow([*row, cancer.target_names[label]])
    diabetes = load_diabetes(scaled=False)
    with open(root / "diabetes.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*diabetes.feature_names, "progression"])
        for row, target in zip(diabetes.data, diabetes.target, strict=True):
            writer.writerow([*row, target])
    wine = load_wine()
    np.savez(root / "wine.npz", x=wine.data.astype(np.float32), y=wine.target)
    digits = load_digits()
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / "digits" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return {
        "CSV, classification (breast cancer)": ["task.path=cancer.csv", "task.label=diagnosis"],
        "CSV, regression (diabetes)": ["task.path=diabetes.csv", "task.label=progression", "task.kind=regression"],
        ".npz (wine)": ["task.path=wine.npz"],
        "image folder (digits, 8x8 PNG)": ["task.path=digits", "task.image_size=8"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="neuromosaic-own-search-"))
    root.mkdir(parents=True, exist_ok=True)
    cases = write_inputs(root)
    print("| input | metric | best validation | its test | completed trials | seconds |")
    print("|---|---|---|---|---|---|")
    for name, settings in cases.items():
        start = time.perf_counter()
        proc = subprocess.run([str(Path(sys.executable).parent / "neuromosaic"), "task=files", *settings,
                               f"search.trials={args.trials}", "visualizers=[]", "runner.workers=1",
                               f"storage.url=sqlite:///{root / 'results.db'}"],
                              cwd=root, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} | | | | {seconds:.0f} |", flush=True)
            continue
        newest = max((root / "runs").glob("files-*/summary.json"), key=lambda p: p.stat().st_mtime)
        summary = json.loads(newest.read_text())
        metric = summary["metric"]
        test = "test_" + metric[4:]
        best = summary["best"]
        print(f"| {name} | {metric} ({summary['direction']}) | {best[metric]:.4f} | {best[test]:.4f} | "
              f"{summary['trials']['completed']} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
