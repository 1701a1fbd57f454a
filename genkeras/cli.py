"""The `genkeras` command: `genkeras train|models|compare ...`."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the progress bar


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {
        "train": "train a model (same flags as train.py)",
        "models": "list the registered models",
        "compare": "train several models at one bottleneck and compare test MSE / PSNR",
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        lines = "\n".join(f"  {name:<10} {text}" for name, text in commands.items())
        print(f"usage: genkeras COMMAND [ARGS]\n\ncommands:\n{lines}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from genkeras.training import main as train_main

        return train_main(rest)
    if command == "models":
        from genkeras.registry import SPECS

        for spec in SPECS.values():
            print(f"{spec.name:<14} {spec.description}")
        return 0
    from genkeras.compare import main as compare_main

    return compare_main(rest)


if __name__ == "__main__":
    sys.exit(main())
