"""`python -m genkeras.commands.finish_run JOB.json`: evaluates, draws and exports a run trained
under another Keras backend (JAX), in a TensorFlow process. train.py starts it itself."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genkeras.commands.finish_run")
    parser.add_argument("job", help="the finish.json a JAX run wrote into its run folder")
    args = parser.parse_args(argv)
    from genkeras.training.finish import finish_job

    finish_job(args.job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
