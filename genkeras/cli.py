"""The `genkeras` command: `genkeras COMMAND [ARGS]`; each command is one module's `main`."""

from __future__ import annotations

import importlib
import sys

# name -> ("module:function", help). Commands import their module only when run.
COMMANDS = {
    "train": ("genkeras.training:main", "train a model (same flags as train.py)"),
    "models": ("genkeras.registry:print_models", "list the registered models"),
    "compare": (
        "genkeras.compare:main",
        "train several models at one bottleneck and compare test MSE / PSNR",
    ),
    "export": ("genkeras.export:main", "export a trained .keras file as a SavedModel version"),
    "serve": (
        "genkeras.serving.server:main",
        "serve SavedModels with TF Serving's REST + gRPC API",
    ),
    "vae-evaluate": (
        "genkeras.vae_tools:evaluate_main",
        "VAE figures from a .keras: IWAE NLL (k=5000), Frechet distance, AUROC",
    ),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:<13} {text}" for name, (_, text) in COMMANDS.items())
        print(
            "usage: genkeras COMMAND [ARGS]   (genkeras COMMAND --help for its flags)\n\n"
            f"commands:\n{lines}"
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command '{argv[0]}'", file=sys.stderr)
            return 2
        return 0
    module, function = COMMANDS[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
