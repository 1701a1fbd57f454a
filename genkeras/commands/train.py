"""`python train.py --model NAME` and `genkeras train --model NAME`: train, evaluate, export.

The flags come from `genkeras.training.config.TrainConfig`, where each is declared once; a
model's own hyperparameters (its `ModelSpec.options`) are added when `--model` names it, so
`--model pixelcnn --help` lists them too. Bad values exit with status 2 and one line naming
the flag and its valid range, before any work starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from genkeras import data
from genkeras.registry import UnknownModelError, available_models, get_spec
from genkeras.training.config import ConfigError, TrainConfig, check, flags


def build_parser(spec=None, add_help=True) -> argparse.ArgumentParser:
    """The train.py parser: every `TrainConfig` flag, then `spec`'s own options."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train a genkeras model, write its pictures and metrics, export a SavedModel.",
        add_help=add_help,
    )
    speed = parser.add_argument_group("speed and scale (see genkeras/training/scale.py)")
    for field in flags():
        meta = field.metadata
        name = "--" + field.name.replace("_", "-")
        target = speed if meta["group"] == "speed" else parser
        help_text = meta["help"]
        if field.name == "model":
            help_text = f"one of: {', '.join(available_models())}"
        elif field.name == "dataset":
            help_text = f"one of: {', '.join(data.DATASETS)} (default: the model's)"
        if field.type in ("bool", bool):
            target.add_argument(name, action="store_true", help=help_text)
            continue
        kind = {"int": int, "float": float}.get(_base_type(field.type), str)
        target.add_argument(
            name,
            type=kind,
            default=field.default,
            choices=meta["choices"],
            metavar=meta["metavar"],
            required=field.name == "model" and add_help,
            help=help_text,
        )
        if field.name == "export_dir":
            parser.add_argument("--no-export", action="store_true", help="skip the export")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for option in spec.options if spec else ():
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=option.type,
            default=option.default,
            choices=option.choices,
            help=option.help,
        )
    return parser


def _base_type(annotation: str) -> str:
    """`"int | None"` -> `"int"` (the fields' annotations are strings)."""
    return str(annotation).split("|")[0].strip()


def writable_folder_problem(path) -> str | None:
    """Why `path` cannot be created and written to, or None when it can (it is created)."""
    try:
        Path(path).expanduser().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=Path(path).expanduser()):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def parse_config(argv) -> TrainConfig:
    """Parses train.py arguments into a checked `TrainConfig`; exits with status 2 and one
    line naming the flag on a bad value."""
    # First pass without --help, so `--model NAME --help` lists that model's own options too.
    first, _ = build_parser(add_help=False).parse_known_args(argv)
    if first.model is None:
        build_parser().parse_args(argv)  # prints help, or the "--model is required" error
    try:
        spec = get_spec(first.model)
        if first.dataset is not None:
            data.dataset_info(first.dataset)
        if first.noise is not None:
            data.Noise.parse(first.noise)
    except (UnknownModelError, data.DataError, ValueError) as error:
        build_parser().error(str(error))
    parser = build_parser(spec)
    args = vars(parser.parse_args(argv))
    values = {field.name: args[field.name] for field in flags()}
    if args["no_export"]:
        values["export_dir"] = None
    config = TrainConfig(
        **values,
        verbose=0 if args["quiet"] else "auto",
        options={option.name: args[option.name] for option in spec.options},
    )
    try:
        check(config)
    except ConfigError as error:
        parser.error(str(error))
    for flag_name, folder in (
        ("--output-dir", config.output_dir),
        ("--export-dir", config.export_dir),
    ):
        problem = folder is not None and writable_folder_problem(folder)
        if problem:
            parser.error(f"{flag_name} {folder}: {problem}; choose a folder you can write to.")
    if config.export_dir is not None and config.version is not None:
        taken = Path(config.export_dir) / config.model / str(config.version)
        if taken.exists():
            parser.error(
                f"--version {config.version}: {taken} already exists; versions are "
                "immutable once served. Pick another --version or leave it out."
            )
    return config


def main(argv=None) -> int:
    config = parse_config(sys.argv[1:] if argv is None else argv)
    from genkeras.training import TrainingError, scale, train

    try:
        result = train(config)
    except (data.DataError, scale.ScaleError, FileExistsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result.metrics, indent=2))
    print(f"run folder: {result.run_dir}")
    for path in result.pictures:
        print(f"picture: {path}")
    if result.export_path:
        print(f"SavedModel: {result.export_path}")
    return 0
