"""The importance-weighted (IWAE) NLL of a whole test set: batched, timed, resumable.

k = 5000 over 10,000 MNIST test images is 50 million decodes, hours on a CPU. So:

- every call decodes many images times many importance samples at once (`decodes_per_call`),
  which keeps the run near the decoder's own throughput;
- before the run it measures the decoder's forward pass and one IWAE call, and prints both
  rates and the estimated time of the whole run;
- after every block of images it writes the per-image figures to a checkpoint (atomically), so
  a stopped run continues where it stopped and gives the same numbers as an unbroken one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from genkeras.evaluation.likelihood import importance_weighted_log_prob


class CheckpointMismatch(ValueError):
    """A checkpoint was written by a run with other settings."""


def _timed(fn, repeats=3) -> float:
    """The median wall time of `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure_throughput(model, images, labels, decodes_per_call, block_images, seed=0) -> dict:
    """Decoder forward passes per second against IWAE decodes per second, on this machine.

    Returns:
        dict: `decoder_images_per_second` (`model.decode` on `decodes_per_call` codes),
        `iwae_decodes_per_second` (one block call as the run makes it) and their ratio.
    """
    import tensorflow as tf

    block = images[:block_images]
    chunk = max(1, decodes_per_call // len(block))
    block_labels = None if labels is None else labels[: len(block)]
    codes = tf.random.stateless_normal([len(block) * chunk, model.latent_dim], [seed, 1])
    code_labels = (
        tf.repeat(tf.constant(block_labels, tf.int32), chunk) if model.num_classes else None
    )
    decode = tf.function(lambda z, y: model.decode(z, y))
    decoder_seconds = _timed(lambda: np.asarray(decode(codes, code_labels)))
    iwae_seconds = _timed(
        lambda: importance_weighted_log_prob(model, block, block_labels, chunk, chunk, seed)
    )
    decodes = len(block) * chunk
    rates = {
        "decoder_images_per_second": decodes / decoder_seconds,
        "iwae_decodes_per_second": decodes / iwae_seconds,
    }
    rates["iwae_share_of_decoder"] = (
        rates["iwae_decodes_per_second"] / rates["decoder_images_per_second"]
    )
    return rates


def _load_checkpoint(path: Path, settings: dict) -> np.ndarray:
    """Per-image NLLs done so far (empty without a checkpoint); refuses other settings."""
    if not path.exists():
        return np.zeros([0], np.float64)
    with np.load(path) as saved:
        found = json.loads(str(saved["settings"]))
        if found != settings:
            differ = sorted(
                k for k in set(found) | set(settings) if found.get(k) != settings.get(k)
            )
            raise CheckpointMismatch(
                f"{path} was written with other settings ({', '.join(differ)}: "
                f"{ {k: found.get(k) for k in differ} } there, "
                f"{ {k: settings.get(k) for k in differ} } now). Rerun with the same settings "
                "to continue it, or give another --checkpoint (or delete this one) to start over."
            )
        return np.asarray(saved["nll"], np.float64)


def _save_checkpoint(path: Path, settings: dict, nll: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, nll=nll, settings=json.dumps(settings, sort_keys=True))
    os.replace(partial, path)


def iwae_test_nll(
    model,
    images,
    labels=None,
    num_samples=5000,
    *,
    decodes_per_call=10_000,
    block_images=100,
    seed=0,
    checkpoint=None,
    identity="",
    report=print,
) -> dict:
    """The k-sample IWAE NLL (nats) of every image, with its standard error.

    Args:
        model: a VAE.
        images, labels: the whole test set (see `genkeras.evaluation.test_set`); labels only
            for conditional models.
        num_samples: k per image.
        decodes_per_call: images x samples decoded in one call (bounds memory).
        block_images: images per checkpoint.
        seed: seeds the importance samples (block b uses seed * 10_000 + b).
        checkpoint: a .npz path to continue from and write to; None keeps nothing.
        identity: names the model in the checkpoint (a path and its size, say), so a
            checkpoint of another model is refused.
        report: where progress lines go.

    Returns:
        dict: `iwae_nll`, `iwae_nll_stderr`, `iwae_samples`, `iwae_images`, `iwae_seconds`
        (this sitting), `iwae_resumed_images` and the measured rates.
    """
    count = len(images)
    settings = {
        "identity": identity,
        "num_samples": int(num_samples),
        "block_images": int(block_images),
        "seed": int(seed),
        "images": int(count),
    }
    path = Path(checkpoint) if checkpoint else None
    nll = _load_checkpoint(path, settings) if path else np.zeros([0], np.float64)
    resumed = len(nll)
    rates = measure_throughput(model, images, labels, decodes_per_call, block_images, seed)
    left = (count - resumed) * num_samples
    report(
        f"decoder: {rates['decoder_images_per_second']:,.0f} images/s; IWAE: "
        f"{rates['iwae_decodes_per_second']:,.0f} decodes/s "
        f"({rates['iwae_share_of_decoder']:.0%} of the decoder). "
        f"{count - resumed:,} images x k={num_samples:,} left"
        + (f" ({resumed:,} done in the checkpoint)" if resumed else "")
        + f": about {left / rates['iwae_decodes_per_second'] / 60:.1f} min."
    )
    started = time.perf_counter()
    chunk = max(1, min(num_samples, decodes_per_call // block_images))
    for start in range(resumed, count, block_images):
        stop = min(start + block_images, count)
        block_labels = None if labels is None else labels[start:stop]
        values = -importance_weighted_log_prob(
            model,
            images[start:stop],
            block_labels,
            num_samples,
            chunk,
            seed * 10_000 + start // block_images,
        )
        nll = np.concatenate([nll, values])
        if path:
            _save_checkpoint(path, settings, nll)
        elapsed = time.perf_counter() - started
        speed = (stop - resumed) / elapsed
        report(
            f"  {stop:,}/{count:,} images, NLL so far {nll.mean():.2f} nats, "
            f"{speed * num_samples:,.0f} decodes/s, {(count - stop) / speed / 60:.1f} min left"
        )
    return {
        "iwae_nll": float(nll.mean()),
        "iwae_nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "iwae_samples": int(num_samples),
        "iwae_images": int(len(nll)),
        "iwae_seconds": round(time.perf_counter() - started, 1),
        "iwae_resumed_images": int(resumed),
        "iwae_decoder_images_per_second": rates["decoder_images_per_second"],
        "iwae_decodes_per_second": rates["iwae_decodes_per_second"],
        "iwae_share_of_decoder": rates["iwae_share_of_decoder"],
    }
