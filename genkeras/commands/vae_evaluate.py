"""`genkeras vae-evaluate PATH.keras`: every quality figure of a trained MNIST VAE.

Prints (and with `--out` writes) a JSON report: posterior statistics, the k = 5000 IWAE
likelihood, the Frechet distance of samples and the outlier AUROC; optionally the pictures and
a SavedModel export whose card carries the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genkeras import data
from genkeras.registry import spec_of_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="genkeras vae-evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="a trained VAE saved as .keras (runs/NAME/NAME.keras)")
    parser.add_argument(
        "--iw-samples", type=int, default=5000, help="k of the IWAE bound (0 = skip)"
    )
    parser.add_argument("--iw-images", type=int, default=200, help="test images for the IWAE bound")
    parser.add_argument("--frechet-samples", type=int, default=10000, help="0 = skip")
    parser.add_argument("--auroc-images", type=int, default=2000, help="per data set; 0 = skip")
    parser.add_argument("--auroc-samples", type=int, default=64)
    parser.add_argument("--pictures", help="also write the PNG pictures into this folder")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--export-dir", help="also export a SavedModel here, figures in its card")
    parser.add_argument("--version", type=int, help="export version (default: next free)")
    parser.add_argument("--training-command", help="recorded in the model card")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import keras

    import genkeras.models  # noqa: F401 - registers the classes `load_model` needs
    from genkeras.evaluation.vae_report import evaluate_vae

    model = keras.saving.load_model(args.model)
    report = evaluate_vae(
        model,
        args.iw_samples,
        args.iw_images,
        args.frechet_samples,
        args.auroc_images,
        args.auroc_samples,
    )
    report["command"] = "genkeras vae-evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.pictures:
        from genkeras.pictures.vae import vae_pictures

        view = data.View(binarize=True, labels=bool(model.num_classes), targets=False)
        # 1000 test images: the attribute vector s averages over about 500 in each group.
        examples = data.take_examples("mnist", "test", count=1000)
        report["pictures"] = [str(p) for p in vae_pictures(model, examples, view, args.pictures)]
    if args.export_dir:
        from genkeras.export import export_model

        spec = spec_of_model(model)
        card = {
            "dataset": "mnist (dynamically binarized)",
            "metrics": report,
            "hyperparameters": model.get_config(),
            "training_command": args.training_command,
            "log_prob_samples_at_export": model.log_prob_samples,
        }
        report["export_path"] = str(export_model(model, spec, args.export_dir, args.version, card))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0
