"""The `genkeras` command: `genkeras COMMAND [ARGS]`. The table only; the commands live in
`genkeras/commands/`, each a module with `main(argv) -> int`, imported when run."""

from __future__ import annotations

import importlib
import sys

# name -> (module under genkeras.commands, help)
COMMANDS = {
    "train": ("train", "train a model (same flags as train.py)"),
    "models": ("models", "list the registered models"),
    "compare": ("compare", "train several models at one bottleneck and compare test MSE / PSNR"),
    "export": ("export", "export a trained .keras file as a SavedModel version"),
    "serve": ("serve", "serve SavedModels with TF Serving's REST + gRPC API"),
    "vae-evaluate": (
        "vae_evaluate",
        "VAE figures from a .keras: IWAE NLL (k=5000), Frechet distance, AUROC",
    ),
    "bayes-evaluate": (
        "bayes_evaluate",
        "label by Bayes' rule with a conditional model, rejecting outliers; calibrate, export",
    ),
    "probe": ("probe", "linear probe of frozen codes with few labels: features without labels"),
    "train-classifier": ("train_classifier", "train the MNIST classifier of the Frechet distance"),
    "explorer-data": (
        "explorer_data",
        "rebuild the latent explorer's bundled digits and histograms",
    ),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<17} {text}" for name, (_, text) in COMMANDS.items())
        print(
            "usage: genkeras COMMAND [ARGS]   (genkeras COMMAND --help for its flags)\n\n"
            f"commands:\n{lines}"
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(f"genkeras.commands.{COMMANDS[argv[0]][0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
