"""Build `static/explorer_data.json`, the data bundled with the latent explorer page.

    genkeras explorer-data [--savedmodels savedmodels] [--count 32] [--hist 500]
    python -m genkeras.commands.explorer_data [same flags]

Writes the MNIST test digits and the log p(x) histograms that
`genkeras.serving.explorer.data.build_explorer_data` computes (see there) to
`genkeras/serving/explorer/static/explorer_data.json`, or to `--output`. Run it again after
re-exporting a likelihood model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genkeras.serving.explorer.data import DEFAULT_OUTPUT, build_explorer_data


def main(argv=None) -> int:
    """Parses the flags, builds the document and writes it.

    Args:
        argv: the arguments after the command name; `None` reads `sys.argv`.

    Returns:
        The exit status, 0.
    """
    parser = argparse.ArgumentParser(
        prog="genkeras explorer-data", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--savedmodels", default="savedmodels")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--hist", type=int, default=500)
    parser.add_argument("--bins", type=int, default=40)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)

    doc = build_explorer_data(args.savedmodels, args.count, args.hist, args.bins, echo=print)
    Path(args.output).write_text(json.dumps(doc, separators=(",", ":")))
    print(f"wrote {args.output} ({Path(args.output).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
