"""`genkeras train-classifier`: trains the small MNIST classifier behind the Frechet distance."""

from __future__ import annotations

import argparse
import json

from genkeras.evaluation.frechet import CLASSIFIER_PATH


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genkeras train-classifier", description=__doc__)
    parser.add_argument("--out", default=str(CLASSIFIER_PATH), help="the .keras file to write")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, help="use only the first N examples of each split")
    args = parser.parse_args(argv)
    if args.epochs < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--epochs and --limit must be >= 1.")
    from genkeras.evaluation.frechet import train_classifier

    print(json.dumps(train_classifier(args.out, args.epochs, limit=args.limit), indent=2))
    return 0
