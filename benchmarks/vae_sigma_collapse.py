"""The lecture's warning in numbers: without the KL term (beta = 0) sigma collapses.

Trains the same dense VAE twice on dynamically binarized MNIST, once with beta = 0 (only the
reconstruction loss) and once with beta = 1 (the ELBO), then reports for each: the mean
posterior sigma, active units, KL, reconstruction loss, and how good samples z ~ N(0, I) look
(Frechet distance of classifier logits against the test set; lower is better). Writes
`OUT/sigma_collapse.json` and `OUT/sigma_collapse_samples.png`.

    GENKERAS_MANUAL_DIR=/work/shared/data python benchmarks/vae_sigma_collapse.py --epochs 10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from genkeras import data
from genkeras.evaluation import frechet
from genkeras.evaluation.likelihood import posterior_statistics
from genkeras.evaluation.test_set import binarized_test_set
from genkeras.evaluation.vae_report import _batches, samples_for_frechet
from genkeras.pictures.grid import save_panels
from genkeras.training import TrainConfig, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--limit", type=int, help="training examples (default: all)")
    parser.add_argument("--out", default="runs/sigma_collapse")
    args = parser.parse_args(argv)
    out = Path(args.out)
    classifier = frechet.load_classifier()
    test = data.take_examples("mnist", "test", count=10000)["image"]
    binary_test, test_labels = binarized_test_set()
    report, panels = {}, []
    for beta in (0.0, 1.0):
        config = TrainConfig(
            model="vae",
            epochs=args.epochs,
            latent_dim=args.latent_dim,
            output_dir=str(out / f"beta{beta:g}"),
            export_dir=None,
            limit=args.limit,
            verbose=0,
            options={"beta": beta},
        )
        result = train(config)
        model = result.model
        stats = posterior_statistics(model, _batches(model, binary_test, test_labels))
        samples = samples_for_frechet(model, 10000)
        report[f"beta={beta:g}"] = {
            "posterior_sigma_mean": stats["posterior_sigma_mean"],
            "active_units": stats["active_units"],
            "kl_loss": stats["kl_loss"],
            "reconstruction_loss": stats["reconstruction_loss"],
            "reconstruction_mse": stats["reconstruction_mse"],
            "frechet_distance_samples_vs_test": frechet.mnist_frechet_distance(
                samples, test, classifier
            ),
            "epochs_run": json.loads((result.run_dir / "metrics.json").read_text())["epochs_run"],
        }
        panels.append((f"beta = {beta:g}: samples z ~ N(0, I)", samples[:32]))
    report["frechet_distance_test_vs_train_floor"] = frechet.mnist_frechet_distance(
        test, data.take_examples("mnist", "train", count=10000)["image"], classifier
    )
    report["command"] = "python benchmarks/vae_sigma_collapse.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    out.mkdir(parents=True, exist_ok=True)
    save_panels(
        [(name, np.asarray(images)) for name, images in panels],
        out / "sigma_collapse_samples.png",
        columns=8,
    )
    text = json.dumps(report, indent=2)
    (out / "sigma_collapse.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
