"""Every command line of genkeras, one module per command, each with `main(argv) -> int`.

`genkeras/cli.py` maps command names to these modules; `train.py` calls `train.main`. Only
modules here import argparse.
"""
