"""The whole-test-set IWAE run: batched like the plain estimator, resumable, and refusing a
checkpoint of other settings; the fixed test binarization; `genkeras vae-evaluate`'s checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from genkeras.evaluation.iwae_run import CheckpointMismatch, iwae_test_nll
from genkeras.evaluation.likelihood import importance_weighted_log_prob
from genkeras.evaluation.test_set import TEST_SEED, binarized_test_set
from genkeras.models.vae import ConditionalVAE, DenseVAE

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def test_set():
    return binarized_test_set("mnist", "test", TEST_SEED)


class Stop(Exception):
    pass


def stop_after(lines):
    seen = []

    def report(line):
        seen.append(line)
        if len(seen) > lines:  # the first line is the estimate, then one per block
            raise Stop

    return report


def test_fixed_binarization_is_one_numpy_draw_over_the_whole_split(test_set):
    images, labels = test_set
    assert images.shape == (10000, *SHAPE) and labels.shape == (10000,)
    assert set(np.unique(images)) == {0.0, 1.0}
    again, _ = binarized_test_set("mnist", "test", TEST_SEED)
    np.testing.assert_array_equal(images, again)
    other, _ = binarized_test_set("mnist", "test", TEST_SEED + 1)
    assert (other != images).mean() > 0.01  # another seed draws other pixels


def test_a_stopped_run_continues_to_the_same_figures(tmp_path, test_set):
    images, _ = test_set
    images = images[:50]
    model = DenseVAE(SHAPE, latent_dim=4, hidden_units=(32,))
    options = dict(decodes_per_call=200, block_images=10, identity="tiny")
    whole = iwae_test_nll(model, images, None, 40, report=lambda line: None, **options)

    path = tmp_path / "run.npz"
    with pytest.raises(Stop):
        iwae_test_nll(model, images, None, 40, checkpoint=path, report=stop_after(2), **options)
    lines = []
    resumed = iwae_test_nll(
        model, images, None, 40, checkpoint=path, report=lines.append, **options
    )
    assert resumed["iwae_resumed_images"] == 20
    assert "(20 done in the checkpoint)" in lines[0] and "decodes/s" in lines[0]
    assert resumed["iwae_nll"] == pytest.approx(whole["iwae_nll"], rel=1e-12)
    assert resumed["iwae_nll_stderr"] == pytest.approx(whole["iwae_nll_stderr"], rel=1e-12)

    # Each block is the plain estimator's answer for those images and that block's seed.
    direct = -importance_weighted_log_prob(model, images[10:20], None, 40, 20, 1)
    with np.load(path) as saved:
        np.testing.assert_allclose(saved["nll"][10:20], direct, rtol=1e-12)


def test_a_checkpoint_of_other_settings_is_refused(tmp_path, test_set):
    images, labels = test_set
    model = ConditionalVAE(SHAPE, latent_dim=2, hidden_units=(16,))
    path = tmp_path / "run.npz"
    quiet = lambda line: None
    iwae_test_nll(model, images[:10], labels[:10], 8, checkpoint=path, identity="a", report=quiet)
    with pytest.raises(CheckpointMismatch, match="num_samples.*Rerun with the same settings"):
        iwae_test_nll(
            model, images[:10], labels[:10], 16, checkpoint=path, identity="a", report=quiet
        )
    with pytest.raises(CheckpointMismatch, match="identity"):
        iwae_test_nll(
            model, images[:10], labels[:10], 8, checkpoint=path, identity="b", report=quiet
        )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--iw-samples", "-1"], "--iw-samples must be at least 0"),
        (["--decodes-per-call", "0"], "--decodes-per-call must be at least 1"),
        ([], "is not a file"),
    ],
)
def test_vae_evaluate_refuses_bad_arguments_before_loading_anything(tmp_path, arguments, message):
    model = "genkeras/pretrained/vae.keras" if arguments else str(tmp_path / "missing.keras")
    result = subprocess.run(
        [sys.executable, "-m", "genkeras.cli", "vae-evaluate", model, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_paired_benchmark_refuses_a_missing_file_before_scoring(tmp_path):
    """benchmarks/vae_paired.py names the missing file and stops before any model is scored."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "vae_paired.py"
    missing = tmp_path / "nope.keras"
    result = subprocess.run(
        [sys.executable, str(script), "genkeras/pretrained/conv_vae.keras", str(missing)],
        capture_output=True,
        text=True,
        cwd=script.parents[1],
    )
    assert result.returncode == 2
    assert f"{missing} is not a file: give a trained VAE's .keras file" in result.stderr
    assert "NLL" not in result.stdout
