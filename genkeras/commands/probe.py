"""`genkeras probe`: how good are features learned without labels? A linear softmax probe on
each shipped model's frozen codes, trained on a few labelled digits per class, tested on the
MNIST test set, raw pixels as the baseline. Prints a table and writes a PNG."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PIXELS = "pixels"


def format_table(results: dict, counts) -> str:
    header = f"{'features':<14}" + "".join(f"{f'{n} / class':>18}" for n in counts)
    lines = [header, "-" * len(header)]
    for name, row in results.items():
        cells = "".join(
            f"{100 * row[n]['mean']:>11.1f} ± {100 * row[n]['std']:>4.1f}" for n in counts
        )
        lines.append(f"{name:<14}{cells}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="genkeras probe", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="pca,dense_ae,conv_ae,vae,conv_vae")
    parser.add_argument("--labels-per-class", default="1,10,100,1000")
    parser.add_argument("--draws", type=int, default=5, help="random labelled sets per setting")
    parser.add_argument("--limit", type=int, help="training and test digits (quick looks)")
    parser.add_argument("--out", default="runs/probe/probe.json")
    parser.add_argument("--picture", default="runs/probe/probe.png")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    try:
        counts = [int(n) for n in args.labels_per_class.split(",")]
    except ValueError:
        parser.error(
            f"--labels-per-class wants integers like 1,10,100, got {args.labels_per_class!r}."
        )
    if min(counts) < 1 or args.draws < 1:
        parser.error("--labels-per-class and --draws must be >= 1.")
    import genkeras.pretrained

    unknown = sorted(set(names) - set(genkeras.pretrained.available()))
    if unknown:
        parser.error(
            f"No pretrained model {', '.join(unknown)}; choose from "
            f"{', '.join(genkeras.pretrained.available())}."
        )
    from genkeras.evaluation.probe import probe
    from genkeras.pictures.probe import probe_figure

    models = {PIXELS: None, **{name: genkeras.pretrained.load(name) for name in names}}
    results = probe(models, counts, args.draws, args.limit)
    print(format_table(results, counts))
    picture = probe_figure(results, args.picture)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    record = {"command": "genkeras probe " + " ".join(argv), "results": results}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nreport: {args.out}\npicture: {picture}")
    return 0
