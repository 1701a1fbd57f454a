"""Train a genkeras model: `python train.py --model conv_ae` (see `--help`)."""

import os
import sys

os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "2"
)  # keep TensorFlow's C++ chatter out of the progress bar

from genkeras.training import main

if __name__ == "__main__":
    sys.exit(main())
