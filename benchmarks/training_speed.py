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
(nats, on 2,000 binarized validation digits, evaluated every 12,800 training images with the
clock stopped) first drops below the target (100 nats). The genkeras side trains the way
`train.py --model conv_vae` does (its model, initialisation, learning rate, warm-up, weight
average, input pipeline with one iterator for the run, steps per execution) and is validated
as train.py validates (on the averaged weights); flags change one thing at a time.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf
from reference_recipe import reference_autoencoder, reference_vae

from genkeras import data, training
from genkeras.models.autoencoders import ConvAutoencoder
from genkeras.models.vae import ConvVAE
from genkeras.models.vae.densities import bernoulli_log_likelihood, gaussian_kl
from genkeras.training import scale
from genkeras.training.callbacks import LearningRateWarmup

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
    """Stops when the validation negative ELBO first drops below `target`, evaluated each time
    the optimizer passes another `every` steps; the clock pauses while it evaluates."""

    def __init__(self, evaluate, target, every=100, max_seconds=1800):
        super().__init__()
        self.evaluate, self.target, self.every = evaluate, target, every
        self.max_seconds = max_seconds
        self.seconds, self.curve, self.reached = 0.0, [], None

    def on_train_begin(self, logs=None):
        self.next_evaluation, self.clock = self.every, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # The optimizer's count, not `batch`: with several steps per execution Keras calls
        # this once per execution.
        steps = int(self.model.optimizer.iterations.numpy())
        if steps < self.next_evaluation:
            return
        self.next_evaluation += self.every
        self.seconds += time.perf_counter() - self.clock
        value = self.evaluate()
        self.curve.append(f"{steps} steps, {self.seconds:.1f} s: {value:.2f}")
        if value < self.target and self.reached is None:
            self.reached = self.seconds
        if self.reached is not None or self.seconds > self.max_seconds:
            self.model.stop_training = True
        self.clock = time.perf_counter()


def reference_run(digits, target, max_seconds, seed):
    """The keras.io recipe's time to `target`: a finished `TimeToQuality` meter."""
    keras.utils.set_random_seed(seed)
    model = reference_vae(architecture("conv_vae"))
    logits = model.decoder.layers[0]
    meter = TimeToQuality(
        lambda: negative_elbo(model.encoder, logits, digits), target, 100, max_seconds
    )
    images = train_arrays(binarized=True)
    model.fit(images, epochs=1000, batch_size=BATCH, callbacks=[meter], verbose=0)
    return meter


def genkeras_run(digits, target, max_seconds, seed, config, initialize):
    """train.py's recipe in `config` (model, initialisation, optimizer, warm-up, weight
    average, pipeline), validated the way train.py validates."""
    resolved = training.resolve(config)
    keras.utils.set_random_seed(seed)
    model = training.build_model(resolved, initialize=initialize)
    averaged = keras.callbacks.SwapEMAWeights()
    averaged.set_model(model)

    def evaluate():
        if config.ema_momentum:
            averaged.on_test_begin()
        value = negative_elbo(model.encoder, model.decoder, digits)
        if config.ema_momentum:
            averaged.on_test_end()
        return value

    every = max(1, round(100 * BATCH / config.batch_size))  # every 12,800 images
    meter = TimeToQuality(evaluate, target, every, max_seconds)
    warmup = [LearningRateWarmup(config.warmup_steps)] if config.warmup_steps else []
    train = training.batches(config, resolved.view, "train", shuffle=True)
    batches, steps_per_epoch = training.endless(train)
    model.fit(
        batches,
        steps_per_epoch=steps_per_epoch,
        epochs=1000,
        callbacks=[*warmup, meter],
        verbose=0,
    )
    return meter


def time_to_quality(target, max_minutes, config, initialize=True, reference=True, repeats=1):
    """Seconds to `target` nats, `repeats` runs (seeds 0, 1, ...) of the reference and of
    train.py's recipe in `config`; ratios of the medians."""
    digits = validation_digits()
    max_seconds = max_minutes * 60
    runs = {}
    if reference:
        runs["reference (keras.io recipe)"] = [
            reference_run(digits, target, max_seconds, seed) for seed in range(repeats)
        ]
    if config.mixed_precision:  # the genkeras side only: the reference has run
        keras.mixed_precision.set_dtype_policy(scale.mixed_precision_policy())
    meters = [
        genkeras_run(digits, target, max_seconds, seed, config, initialize)
        for seed in range(repeats)
    ]
    recipe = (
        f"Adam {config.learning_rate:g}, warm-up {config.warmup_steps} steps, "
        f"weight average {config.ema_momentum:g}, "
        f"batch {config.batch_size}, output bias {'from the data' if initialize else 'zero'}, "
        f"{keras.mixed_precision.dtype_policy().name}, "
        f"{config.steps_per_execution} steps per execution"
    )
    runs[f"genkeras ({recipe})"] = meters

    def median(meters):
        times = [m.reached for m in meters]
        return None if None in times else float(np.median(times))

    base = median(runs["reference (keras.io recipe)"]) if reference else None
    report = {}
    for name, meters in runs.items():
        middle = median(meters)
        report[name] = {
            "seconds_to_target (median)": None if middle is None else round(middle, 1),
            "ratio (medians)": None if middle is None or base is None else round(middle / base, 2),
            "runs": [
                {
                    "seed": seed,
                    "seconds_to_target": None if m.reached is None else round(m.reached, 1),
                    "curve (negative ELBO, nats)": m.curve,
                }
                for seed, m in enumerate(meters)
            ],
        }
    print(json.dumps({"target_nats": target, **report}, indent=2), flush=True)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "time-to-quality"])
    parser.add_argument("--steps", type=int, default=200, help="throughput: steps per variant")
    time_options = parser.add_argument_group("time to quality (genkeras side; train.py flags)")
    time_options.add_argument("--target", type=float, default=100.0)
    time_options.add_argument("--max-minutes", type=float, default=20.0)
    time_options.add_argument("--learning-rate", type=float, help="default: train.py's")
    time_options.add_argument("--warmup-steps", type=int, help="default: train.py's")
    time_options.add_argument("--ema-momentum", type=float, help="default: train.py's")
    time_options.add_argument("--batch-size", type=int, default=BATCH)
    time_options.add_argument("--steps-per-execution", type=int, default=8)
    time_options.add_argument("--mixed-precision", action="store_true")
    time_options.add_argument(
        "--zero-output-bias", action="store_true", help="skip the data-dependent initialisation"
    )
    time_options.add_argument("--skip-reference", action="store_true")
    time_options.add_argument("--repeats", type=int, default=1, help="runs per recipe (seeds)")
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.steps)
        return
    config = training.TrainConfig(
        model="conv_vae",
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        ema_momentum=args.ema_momentum,
        batch_size=args.batch_size,
        steps_per_execution=args.steps_per_execution,
        mixed_precision=args.mixed_precision,
    )
    time_to_quality(
        args.target,
        args.max_minutes,
        config,
        initialize=not args.zero_output_bias,
        reference=not args.skip_reference,
        repeats=args.repeats,
    )


if __name__ == "__main__":
    main()
