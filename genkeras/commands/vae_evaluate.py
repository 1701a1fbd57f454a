"""`genkeras vae-evaluate PATH.keras`: every quality figure of a trained MNIST VAE.

Prints (and with `--out` writes) a JSON report: posterior statistics, the k = 5000 IWAE
likelihood, the Frechet distance of samples and the outlier AUROC; optionally the pictures and
a SavedModel export whose card carries the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from genkeras import data
from genkeras.registry import spec_of_model


def file_identity(path) -> str:
    """The file's name and SHA-256: a checkpoint of other weights is refused."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return f"{Path(path).name} sha256:{digest}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="genkeras vae-evaluate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", help="a trained VAE saved as .keras (runs/NAME/NAME.keras)")
    parser.add_argument(
        "--iw-samples", type=int, default=5000, help="k of the IWAE bound (0 = skip)"
    )
    parser.add_argument(
        "--iw-images",
        type=int,
        help="the first N test images for the IWAE bound (default: all 10,000)",
    )
    parser.add_argument(
        "--checkpoint",
        help="continue the IWAE run from this .npz and save it after every block of images "
        "(default: runs/iwae/<model file name>-k<K>.npz; 'none' keeps nothing)",
    )
    parser.add_argument(
        "--decodes-per-call",
        type=int,
        default=10_000,
        help="images x importance samples decoded at once (lower it if memory is short)",
    )
    parser.add_argument("--frechet-samples", type=int, default=10000, help="0 = skip")
    parser.add_argument("--auroc-images", type=int, default=2000, help="per data set; 0 = skip")
    parser.add_argument("--auroc-samples", type=int, default=64)
    parser.add_argument("--pictures", help="also write the PNG pictures into this folder")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--export-dir", help="also export a SavedModel here, figures in its card")
    parser.add_argument("--version", type=int, help="export version (default: next free)")
    parser.add_argument("--training-command", help="recorded in the model card")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("iw_samples", "iw_images", "decodes_per_call", "frechet_samples", "auroc_images"):
        value, least = getattr(args, name), 1 if name == "decodes_per_call" else 0
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if not Path(args.model).is_file():
        parser.error(f"{args.model} is not a file: give a trained VAE's .keras file")
    checkpoint = args.checkpoint or f"runs/iwae/{Path(args.model).stem}-k{args.iw_samples}.npz"
    import keras

    import genkeras.models  # noqa: F401 - registers the classes `load_model` needs
    from genkeras.evaluation.iwae_run import CheckpointMismatch
    from genkeras.evaluation.vae_report import evaluate_vae

    model = keras.saving.load_model(args.model)

    try:
        report = evaluate_vae(
            model,
            args.iw_samples,
            args.iw_images,
            args.frechet_samples,
            args.auroc_images,
            args.auroc_samples,
            iwae_options={
                "checkpoint": None if checkpoint == "none" else checkpoint,
                "identity": file_identity(args.model),
                "decodes_per_call": args.decodes_per_call,
                "report": lambda line: print(line, file=sys.stderr, flush=True),
            },
        )
    except CheckpointMismatch as error:
        print(f"genkeras vae-evaluate: error: {error}", file=sys.stderr)
        return 2
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
