"""VAE quality figures for docs/benchmarks.md: the same as `genkeras vae-evaluate`.

    GENKERAS_MANUAL_DIR=/work/shared/data python benchmarks/vae_quality.py \
        runs/conv_vae/conv_vae.keras --iw-samples 5000 --iw-images 200 \
        --out runs/conv_vae/quality.json
"""

import sys

from genkeras.commands.vae_evaluate import main

if __name__ == "__main__":
    sys.exit(main())
