"""`genkeras export --model NAME [--keras FILE] [--export-dir savedmodels] [--version N]`.

Exports a trained `.keras` file (default `runs/NAME/NAME.keras`) as a new SavedModel version,
with the model card built from the run's `metrics.json` beside it, or, with `--card-from`,
from an earlier export's card: re-exporting the same weights with this genkeras (its
signatures and in-graph limits) keeps the figures and says which version it re-exports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genkeras.registry import UnknownModelError, get_spec

# What the writer sets for every export; the rest of a card describes the weights.
WRITER_FIELDS = {
    "name",
    "version",
    "description",
    "architecture",
    "signatures",
    "default_signature",
    "max_generated_images",
    "package_version",
    "keras_version",
    "tensorflow_version",
    "exported_at",
}


def reexport_card(path: Path) -> dict:
    """An earlier card's fields about the weights, and which export this one repeats."""
    earlier = json.loads(path.read_text())
    if not isinstance(earlier, dict) or "version" not in earlier:
        raise ValueError("not a genkeras model card (no 'version')")
    card = {key: value for key, value in earlier.items() if key not in WRITER_FIELDS}
    card["reexport_of"] = {
        "version": earlier["version"],
        "exported_at": earlier.get("exported_at"),
        "package_version": earlier.get("package_version"),
    }
    return card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genkeras export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registry name")
    parser.add_argument("--keras", help="the .keras file (default: runs/NAME/NAME.keras)")
    parser.add_argument("--export-dir", default="savedmodels")
    parser.add_argument("--version", type=int, help="default: next free integer")
    parser.add_argument(
        "--card-from",
        help="an earlier version's model_card.json to keep the figures of (same weights)",
    )
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
    if args.card_from:
        try:
            card = reexport_card(Path(args.card_from))
        except (OSError, ValueError) as error:
            parser.error(f"--card-from {args.card_from}: {error}")
    else:
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
