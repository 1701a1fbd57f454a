"""`genkeras probe`: a linear probe on frozen codes, and the command end to end."""

import json
import subprocess
import sys

import numpy as np
from conftest import ROOT

from genkeras.evaluation.probe import fit_softmax, labelled_subset


def test_the_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    centres = np.array([[0, 0], [4, 0], [0, 4]])
    features = centres[labels] + rng.normal(scale=0.5, size=(150, 2))
    assert (fit_softmax(features, labels, num_classes=3)(features) == labels).mean() > 0.97
    noise = rng.normal(size=(150, 2))
    held_out = rng.normal(size=(3000, 2))
    chance = fit_softmax(noise, labels, num_classes=3)(held_out) == rng.integers(0, 3, 3000)
    assert abs(chance.mean() - 1 / 3) < 0.05


def test_labelled_subsets_take_each_class_equally_and_vary_with_the_seed():
    labels = np.repeat(np.arange(10), 20)
    first, second = labelled_subset(labels, 3, seed=0), labelled_subset(labels, 3, seed=1)
    assert np.bincount(labels[first]).tolist() == [3] * 10
    assert set(first) != set(second)


def test_probe_command_prints_the_table(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "genkeras.cli", "probe", "--models", "pca,conv_ae"]
        + ["--labels-per-class", "1,10", "--draws", "2", "--limit", "500"]
        + ["--out", str(tmp_path / "p.json"), "--picture", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("features"))
    rows = [line.split()[0] for line in lines[header + 2 : header + 5]]
    assert rows == ["pixels", "pca", "conv_ae"]
    report = json.loads((tmp_path / "p.json").read_text())["results"]
    assert 0.1 < report["conv_ae"]["10"]["mean"] <= 1 and len(report["pca"]["1"]["accuracies"]) == 2
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    unknown = subprocess.run(
        [sys.executable, "-m", "genkeras.cli", "probe", "--models", "nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert unknown.returncode == 2 and "No pretrained model nope" in unknown.stderr
