"""Training speed and time to quality, as ratios against the keras.io recipe.

Same model size, same machine, one run each; figures go to docs/benchmarks.md.

    GENKERAS_MANUAL_DIR=../shared/data python benchmarks/training_speed.py throughput
    GENKERAS_MANUAL_DIR=../shared/data python benchmarks/training_speed.py time-to-quality

`throughput`: images per second of conv_ae and conv_vae training steps (first batches of the
epoch excluded), for the reference (`reference_recipe.py`: numpy arrays in `fit`, GradientTape
step) and for genkeras (its tf.data pipeline, which binarizes afresh each epoch), with the
batch already in memory (the model's own speed: the pipeline starves it if this is faster),
with XLA, and with several steps per execution.

`time-to-quality`: wall-clock training seconds until conv_vae's validation negative ELBO
(nats, on 2,000 dynamically binarized validation digits, evaluated every 100 steps with the
clock stopped) first drops below the target (100 nats).
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf
from reference_recipe import reference_autoencoder, reference_vae

from genkeras import data
from genkeras.models.autoencoders import ConvAutoencoder
from genkeras.models.vae import ConvVAE, bernoulli_log_likelihood, gaussian_kl

BATCH = 128


class Throughput(keras.callbacks.Callback):
    """Images per second over training batches `skip`.. of one epoch (no validation)."""

    def __init__(self, batch_size, skip=5):
        super().__init__()
        self.batch_size, self.skip = batch_size, skip
        self.stamps = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append(time.perf_counter())

    def images_per_second(self, steps_per_call=1):
        stamps = self.stamps[self.skip :]
        return (len(stamps) - 1) * steps_per_call * self.batch_size / (stamps[-1] - stamps[0])


def train_arrays(binarized: bool, count=None):
    """The training split as one numpy array (what the keras.io recipe feeds `fit`)."""
    images = data.take_examples("mnist", "train", count=count or 55_000)["image"]
    images = images.astype("float32") / 255.0 if images.dtype == np.uint8 else images
    if binarized:  # numpy arrays are fixed, so the reference binarizes once
        images = (np.random.default_rng(0).random(images.shape) < images).astype("float32")
    return images


def genkeras_batches(binarized: bool, batch_size=BATCH):
    view = data.View(binarize=binarized, targets=not binarized)
    return data.pipeline(
        data.load_split("mnist", "train"), view, batch_size=batch_size, shuffle=True
    )


def architecture(name):
    return ConvVAE((28, 28, 1), 32) if name == "conv_vae" else ConvAutoencoder((28, 28, 1), 16)


def measure(model, fit_data, steps, steps_per_call=1, **fit_kwargs):
    meter = Throughput(BATCH, skip=max(5 // steps_per_call, 2))
    model.fit(fit_data, epochs=1, steps_per_epoch=steps, callbacks=[meter], verbose=0, **fit_kwargs)
    return meter.images_per_second(steps_per_call)


def ours(name, **compile_kwargs):
    model = architecture(name)
    loss = None if name == "conv_vae" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, **compile_kwargs)
    return model


def throughput(steps):
    results = {}
    for name in ("conv_ae", "conv_vae"):
        vae = name == "conv_vae"
        arrays = train_arrays(binarized=vae)
        reference = (reference_vae if vae else reference_autoencoder)(architecture(name))
        figures = {
            "reference (keras.io recipe)": measure(
                reference, arrays, steps, batch_size=BATCH, **({} if vae else {"y": arrays})
            )
        }
        pipeline = genkeras_batches(binarized=vae).repeat()
        figures["genkeras (tf.data pipeline)"] = measure(ours(name), pipeline, steps)
        in_memory = next(iter(pipeline))
        in_memory = tf.data.Dataset.from_tensors(in_memory).repeat()
        figures["genkeras, batch already in memory"] = measure(ours(name), in_memory, steps)
        figures["genkeras + XLA (--jit-compile on)"] = measure(
            ours(name, jit_compile=True), pipeline, steps
        )
        figures["genkeras + --steps-per-execution 8"] = measure(
            ours(name, steps_per_execution=8), pipeline, steps, steps_per_call=8
        )
        base = figures["reference (keras.io recipe)"]
        results[name] = {
            key: {"images_per_second": round(value), "ratio": round(value / base, 2)}
            for key, value in figures.items()
        }
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    return results


# --- time to quality -------------------------------------------------------------------------


def validation_digits(count=2000):
    images = data.take_examples("mnist", "validation", count=count)["image"]
    images = images.astype("float32") / 255.0 if images.dtype == np.uint8 else images
    return (np.random.default_rng(1).random(images.shape) < images).astype("float32")


def negative_elbo(encoder, decoder_logits, images, seed=0):
    """One-sample negative ELBO in nats per image, averaged (the same for both recipes)."""
    z_mean, z_log_var = encoder([images])
    eps = keras.random.normal(keras.ops.shape(z_mean), seed=seed)
    z = z_mean + keras.ops.exp(0.5 * z_log_var) * eps
    log_px = bernoulli_log_likelihood(images, decoder_logits([z]))
    kl = keras.ops.sum(gaussian_kl(z_mean, z_log_var), axis=-1)
    return float(keras.ops.mean(kl - log_px))


class TimeToQuality(keras.callbacks.Callback):
    """Stops when the validation negative ELBO first drops below `target`; the clock pauses
    while it evaluates."""

    def __init__(self, evaluate, target, every=100, max_seconds=1800):
        super().__init__()
        self.evaluate, self.target, self.every, self.max_seconds = (
            evaluate,
            target,
            every,
            max_seconds,
        )
        self.seconds, self.curve, self.reached = 0.0, [], None

    def on_train_begin(self, logs=None):
        self.steps, self.clock = 0, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps % self.every:
            return
        self.seconds += time.perf_counter() - self.clock
        value = self.evaluate()
        self.curve.append((self.steps, round(self.seconds, 1), round(value, 2)))
        if value < self.target and self.reached is None:
            self.reached = self.seconds
        if self.reached is not None or self.seconds > self.max_seconds:
            self.model.stop_training = True
        self.clock = time.perf_counter()


def time_to_quality(
    target, max_minutes, learning_rate, batch_size, anneal_steps, mixed=False, reference=True
):
    digits = validation_digits()
    runs = {}
    if reference:
        keras.utils.set_random_seed(0)
        model = reference_vae(architecture("conv_vae"))
        logits = model.decoder.layers[0]
        meter = TimeToQuality(
            lambda: negative_elbo(model.encoder, logits, digits),
            target,
            max_seconds=max_minutes * 60,
        )
        model.fit(
            train_arrays(binarized=True),
            epochs=1000,
            batch_size=BATCH,
            callbacks=[meter],
            verbose=0,
        )
        runs["reference (keras.io recipe)"] = meter

    keras.utils.set_random_seed(0)
    if mixed:  # what --mixed-precision picks without a GPU
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    model = architecture("conv_vae")
    rate = learning_rate
    if anneal_steps:  # what --time-budget does by the clock, here by the step
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, anneal_steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(rate))
    meter = TimeToQuality(
        lambda: negative_elbo(model.encoder, model.decoder, digits),
        target,
        every=max(1, round(100 * BATCH / batch_size)),
        max_seconds=max_minutes * 60,
    )
    model.fit(genkeras_batches(True, batch_size), epochs=1000, callbacks=[meter], verbose=0)
    schedule = f", cosine over {anneal_steps} steps" if anneal_steps else ""
    schedule += ", mixed_bfloat16" if mixed else ""
    runs[f"genkeras (tf.data, Adam {learning_rate:g}{schedule}, batch {batch_size})"] = meter

    base = runs["reference (keras.io recipe)"].reached if reference else None
    report = {
        name: {
            "seconds_to_target": None if m.reached is None else round(m.reached, 1),
            "ratio": None if m.reached is None or base is None else round(m.reached / base, 2),
            "curve (steps, seconds, negative ELBO)": m.curve,
        }
        for name, m in runs.items()
    }
    print(json.dumps({"target_nats": target, **report}, indent=2), flush=True)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "time-to-quality"])
    parser.add_argument("--steps", type=int, default=200, help="throughput: steps per variant")
    parser.add_argument("--target", type=float, default=100.0)
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--anneal-steps", type=int, default=1200, help="0 = constant rate")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.steps)
    else:
        time_to_quality(
            args.target,
            args.max_minutes,
            args.learning_rate,
            args.batch_size,
            args.anneal_steps,
            mixed=args.mixed_precision,
            reference=not args.skip_reference,
        )


if __name__ == "__main__":
    main()
