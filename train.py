"""Train a genkeras model: `python train.py --model conv_ae` (see `--help`)."""

import sys

from genkeras.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
