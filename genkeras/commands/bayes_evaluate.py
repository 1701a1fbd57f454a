"""`genkeras bayes-evaluate PATH.keras`: a conditional model as a classifier by Bayes' rule.

Calibrates the model (prior p(y) from the training labels, outlier threshold from the
validation digits), then measures on the MNIST test set with the Fashion-MNIST test set mixed
in: accuracy, the share of Fashion images flagged as outliers, accuracy against coverage, and
the shipped discriminative classifier beside it. Writes the JSON report, the picture, the
calibrated `.keras` file and, with --export-dir, a new SavedModel version whose `classify` and
`label_posterior` signatures use the calibration (its card adds the report to the training
run's `metrics.json`, when one lies beside the `.keras` file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="genkeras bayes-evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "model", help="a trained conditional model saved as .keras (cvae, cpixelcnn)"
    )
    parser.add_argument(
        "--num-samples",
        type=int,
        help="importance samples per class, VAEs only (default: the model's export k)",
    )
    parser.add_argument(
        "--limit", type=int, help="images per split, for quick looks (default: all)"
    )
    parser.add_argument("--out", default="runs/bayes/report.json", help="the JSON report")
    parser.add_argument("--picture", default="runs/bayes/bayes_classifier.png")
    parser.add_argument("--save-keras", help="write the calibrated model here (.keras)")
    parser.add_argument("--export-dir", help="also export a SavedModel version here")
    parser.add_argument("--version", type=int, help="export version (default: next free)")
    args = parser.parse_args(argv)
    for name in ("num_samples", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    if not Path(args.model).exists():
        parser.error(f"{args.model} does not exist.")

    import keras

    import genkeras.models  # noqa: F401 - registers the classes `load_model` needs
    from genkeras.evaluation import bayes
    from genkeras.pictures.bayes import bayes_classifier_figure

    model = keras.saving.load_model(args.model)
    if not hasattr(model, "label_posterior"):
        parser.error(
            f"{args.model} is a {type(model).__name__}, not a conditional model: train one "
            "with train.py --model cvae or --model cpixelcnn."
        )
    calibration = bayes.calibrate(model, args.num_samples, args.limit)
    report = bayes.evaluate(model, args.num_samples, args.limit)
    picture = bayes_classifier_figure(report, args.picture)
    report.pop("curves")
    report["command"] = "genkeras bayes-evaluate " + " ".join(argv)
    report["picture"] = str(picture)
    if args.save_keras:
        model.save(args.save_keras)
    if args.export_dir:
        from genkeras.export import export_model
        from genkeras.registry import spec_of_model

        # The training run's card fields (metrics.json beside the .keras file), if any.
        run_card = Path(args.model).parent / "metrics.json"
        card = {
            **(json.loads(run_card.read_text()) if run_card.exists() else {}),
            "dataset": "mnist (dynamically binarized)",
            "bayes_classifier": report,
            **calibration,
        }
        report["export_path"] = str(
            export_model(model, spec_of_model(model), args.export_dir, args.version, card)
        )
    text = json.dumps(report, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0
