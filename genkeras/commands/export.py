"""`genkeras export --model NAME [--keras FILE] [--export-dir savedmodels] [--version N]`.

Exports a trained `.keras` file (default `runs/NAME/NAME.keras`) as a new SavedModel version,
with the model card built from the run's `metrics.json` beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genkeras.registry import UnknownModelError, get_spec


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genkeras export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry name")
    parser.add_argument("--keras", help="the .keras file (default: runs/NAME/NAME.keras)")
    parser.add_argument("--export-dir", default="savedmodels")
    parser.add_argument("--version", type=int, help="default: next free integer")
    args = parser.parse_args(argv)
    try:
        spec = get_spec(args.model)
    except UnknownModelError as error:
        parser.error(str(error))
    if args.version is not None and args.version < 0:
        parser.error(f"--version must be >= 0, got {args.version}.")
    source = Path(args.keras or f"runs/{spec.name}/{spec.name}.keras")
    if not source.exists():
        parser.error(
            f"{source} does not exist; train first (python train.py --model {spec.name}) "
            "or pass --keras."
        )
    metrics = source.parent / "metrics.json"
    card = json.loads(metrics.read_text()) if metrics.exists() else {}
    import keras

    from genkeras.export import export_model

    try:
        path = export_model(
            keras.saving.load_model(source), spec, args.export_dir, args.version, card
        )
    except FileExistsError as error:
        parser.error(str(error))
    print(f"SavedModel: {path}")
    return 0
