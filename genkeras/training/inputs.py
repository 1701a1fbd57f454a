"""The batches a run trains, validates and tests on, built from its resolved config."""

from __future__ import annotations

import keras

from genkeras import data
from genkeras.training import scale


def batches(config, view, split, *, shuffle):
    """`split` of the run's data set as model batches (sharded by data under multi-worker)."""
    ds = data.load_split(
        config.dataset,
        split,
        manual_dir=config.manual_dir,
        data_dir=config.data_dir,
        limit=config.limit,
    )
    ds = data.pipeline(ds, view, batch_size=config.batch_size, shuffle=shuffle, seed=config.seed)
    return scale.shard_by_data(ds) if config.strategy == "multi-worker" else ds


def endless(ds):
    """`(ds.repeat(), batches in one pass)`, or `(ds, None)` when the count is unknown.

    Given the steps per epoch, Keras keeps one iterator for the whole run instead of starting
    a new one every epoch, which can stall an epoch's start for seconds
    (benchmarks/epoch_boundaries.py measures it). Every pass over the repeated data covers the
    split once, reshuffled. Keras then runs whole executions: with N steps per execution an
    epoch is rounded up to a multiple of N steps, and the next epoch goes on from there.
    """
    count = int(ds.cardinality())
    return (ds.repeat(), count) if count > 0 else (ds, None)


def example_inputs(config, view, count=2):
    """The first `count` training inputs, shaped as the model receives them (images, or images
    and labels), unshuffled: every worker of a cluster gets the same ones."""
    ds = data.load_split(
        config.dataset, "train", manual_dir=config.manual_dir, data_dir=config.data_dir, limit=count
    )
    first = next(iter(data.pipeline(ds, view, batch_size=count, shuffle=False, cache=False)))
    first = keras.tree.map_structure(lambda tensor: tensor.numpy(), first)  # for any backend
    return first[0] if view.targets else first


def built_model(run):
    """The run's model with its weights created (random, uncompiled): built from the registry
    and called once on `example_inputs`, whatever the model's inputs are."""
    model = run.spec.build(run.info.image_shape, run.config.latent_dim, **run.options)
    model(example_inputs(run.config, run.view))
    return model
