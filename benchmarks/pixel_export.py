"""Export a trained pixel model's run folder as a SavedModel with a full model card.

    python benchmarks/pixel_export.py --run runs/pixelcnn [--version 1] \
        [--extra outliers.json sampling.json] [--export-dir savedmodels]

For runs trained with `--no-export` (e.g. with a `--time-budget`): loads `RUN/NAME.keras`,
takes `RUN/metrics.json` as the card and merges any extra JSON files (outlier AUROC, sampler
timings) under `extra_metrics`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from genkeras import data  # noqa: E402
from genkeras.export import export_model  # noqa: E402
from genkeras.registry import get_spec  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder holding NAME.keras, metrics.json")
    parser.add_argument("--version", type=int)
    parser.add_argument("--export-dir", default="savedmodels")
    parser.add_argument("--extra", nargs="*", default=[], help="JSON files merged into the card")
    args = parser.parse_args()
    run = Path(args.run)
    report = json.loads((run / "metrics.json").read_text())
    model = keras.saving.load_model(run / f"{report['model']}.keras")
    spec = get_spec(report["model"])
    examples = data.take_examples(report["dataset"], "test", count=64)
    view = spec.view(report["hyperparameters"]) if callable(spec.view) else spec.view
    for picture in spec.pictures(model, examples, view, run):  # current picture code
        print(f"picture: {picture}")
    report["extra_metrics"] = {Path(f).stem: json.loads(Path(f).read_text()) for f in args.extra}
    path = export_model(model, spec, args.export_dir, args.version, card=report)
    print(f"SavedModel: {path}")


if __name__ == "__main__":
    main()
