"""`genkeras compare`: several models at the same bottleneck, one table, one picture.

Example:
    genkeras compare --models pca,dense_ae,conv_ae --latent-dim 16

prints test MSE and PSNR per model and writes `runs/compare/latent16/reconstructions.png`
(the lecture's "Reconstructions (on the Test Set)": original, then each model's output).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genkeras import data
from genkeras.registry import UnknownModelError, get_spec


def format_table(rows: list[dict]) -> str:
    """A plain-text table: model, test MSE, PSNR, squared error per image, training seconds."""
    header = f"{'model':<14}{'test MSE':>10}{'PSNR dB':>9}{'SE/image':>10}{'train s':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        m, seconds = row["metrics"], row.get("training_seconds")
        lines.append(
            f"{row['model']:<14}{m['test_mse']:>10.5f}{m['test_psnr']:>9.2f}"
            f"{m['test_squared_error_per_image']:>10.2f}"
            f"{'-' if seconds is None else f'{seconds:.1f}':>9}"
        )
    return "\n".join(lines)


def compare(
    names,
    latent_dim,
    *,
    epochs=None,
    dataset="mnist",
    limit=None,
    output_dir="runs/compare",
    reuse=False,
    verbose="auto",
) -> tuple[list[dict], Path]:
    """Trains (or, with `reuse`, reloads) each model and compares them on the test set.

    Args:
        names: registry names.
        latent_dim: the shared bottleneck size.
        epochs: epochs for every gradient-trained model (default: each model's own).
        dataset, limit: the data (limit caps each split, for quick looks).
        output_dir: runs go to `output_dir/latentD/NAME/`.
        reuse: read `metrics.json` and `NAME.keras` from earlier runs instead of training.

    Returns:
        The per-model reports (as in metrics.json) and the path of the picture.
    """
    import keras

    from genkeras.pictures.grid import save_panels
    from genkeras.training import TrainConfig, train

    folder = Path(output_dir) / f"latent{latent_dim}"
    reports, models = [], {}
    for name in names:
        run_dir = folder / name
        if reuse and (run_dir / "metrics.json").exists():
            reports.append(json.loads((run_dir / "metrics.json").read_text()))
            models[name] = keras.saving.load_model(run_dir / f"{name}.keras")
            continue
        result = train(
            TrainConfig(
                model=name,
                dataset=dataset,
                latent_dim=latent_dim,
                epochs=epochs,
                limit=limit,
                output_dir=str(folder),
                export_dir=None,
                verbose=verbose,
            )
        )
        reports.append(json.loads((result.run_dir / "metrics.json").read_text()))
        models[name] = result.model
    originals = data.take_examples(dataset, "test", count=12)["image"]
    panels = [("Original", originals)] + [
        (name, np.asarray(model.reconstruct(originals))) for name, model in models.items()
    ]
    path = save_panels(
        panels,
        folder / "reconstructions.png",
        columns=2,
        title=f"Test-set reconstructions, latent dimension {latent_dim}",
    )
    return reports, path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="genkeras compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="pca,dense_ae,conv_ae", help="comma-separated registry names"
    )
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument(
        "--epochs", type=int, help="epochs for each trained model (default: its own)"
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--limit", type=int, help="use only the first N examples of each split")
    parser.add_argument("--output-dir", default="runs/compare")
    parser.add_argument("--reuse", action="store_true", help="reuse earlier runs in --output-dir")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    try:
        for name in names:
            get_spec(name)
        data.dataset_info(args.dataset)
    except (UnknownModelError, data.DataError) as error:
        parser.error(str(error))
    reports, path = compare(
        names,
        args.latent_dim,
        epochs=args.epochs,
        dataset=args.dataset,
        limit=args.limit,
        output_dir=args.output_dir,
        reuse=args.reuse,
        verbose=0 if args.quiet else "auto",
    )
    print(f"\nTest set of {args.dataset}, latent dimension {args.latent_dim}:\n")
    print(format_table(reports))
    print(f"\npicture: {path}")
    return 0
