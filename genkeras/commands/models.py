"""`genkeras models`: one line per registered model."""

from __future__ import annotations

import argparse

from genkeras.registry import SPECS


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="genkeras models", description=__doc__).parse_args(argv)
    for spec in SPECS.values():
        print(f"{spec.name:<14} {spec.description}")
    return 0
