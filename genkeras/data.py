"""Data sets through tensorflow-datasets, and the tf.data pipeline every model trains on.

The path is always the same: TFDS builds (or reuses) its TFRecords, `load_split` turns one
split into float32 images in [0, 1], and `pipeline` caches, shuffles, batches, corrupts and
prefetches them into the `(inputs, targets)` pairs `model.fit` expects.

Offline machines hand TFDS the original archives through a manual folder: the flag
`--manual-dir` or the environment variable `GENKERAS_MANUAL_DIR`, a folder with one
subfolder per data set (`mnist/`, `fashion_mnist/`, ...) holding the files TFDS would
download.
TensorFlow and tensorflow-datasets are imported inside the functions that use them, so the
data set table, `View` and `Noise` (all `train.py --help` needs) load in milliseconds.

Longer than 400 lines because the whole input path, from archive to batch, reads best in one
file: every model goes through each step of it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import tensorflow as tf
    import tensorflow_datasets as tfds

MANUAL_DIR_ENV = "GENKERAS_MANUAL_DIR"
DATA_DIR_ENV = "GENKERAS_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What genkeras needs to know about one TFDS data set.

    Attributes:
        name: the TFDS name.
        image_shape: (height, width, channels) after preprocessing.
        splits: TFDS split strings for "train", "validation" and "test".
        label_key: feature holding the class label, or None.
        num_classes: number of classes behind `label_key`.
        attributes_key: feature holding binary attributes (CelebA), or None.
    """

    name: str
    image_shape: tuple[int, int, int]
    splits: dict[str, str]
    label_key: str | None = "label"
    num_classes: int = 10
    attributes_key: str | None = None


# Validation comes out of the training split where TFDS has none, so the test set stays untouched.
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        (28, 28, 1),
        {"train": "train[:55000]", "validation": "train[55000:]", "test": "test"},
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        (28, 28, 1),
        {"train": "train[:55000]", "validation": "train[55000:]", "test": "test"},
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (32, 32, 3),
        {"train": "train[:45000]", "validation": "train[45000:]", "test": "test"},
    ),
    "celeb_a": DatasetInfo(
        "celeb_a",
        (64, 64, 3),
        {"train": "train", "validation": "validation", "test": "test"},
        label_key=None,
        num_classes=0,
        attributes_key="attributes",
    ),
}

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """A data set that is unknown or cannot be loaded; the message says how to fix it."""


def dataset_info(name: str) -> DatasetInfo:
    """Returns the `DatasetInfo` of `name`, or raises `DataError` listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"Unknown data set '{name}'. Valid data sets: {', '.join(sorted(DATASETS))}."
        ) from None


def manual_dir_for(name: str, manual_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder of `name`'s manual archives: `manual_dir/name`, else $GENKERAS_MANUAL_DIR/name."""
    root = manual_dir or os.environ.get(MANUAL_DIR_ENV)
    return Path(root).expanduser() / name if root else None


def expected_archives(name: str) -> list[str]:
    """File names TFDS downloads for `name`; these are what a manual folder must hold."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name)
    return sorted({info.filename for info in (builder.url_infos or {}).values()})


def prepare(name: str, *, manual_dir=None, data_dir=None) -> tfds.core.DatasetBuilder:
    """Makes sure TFDS has prepared `name`, from the manual folder when one is set.

    Args:
        name: a key of `DATASETS`.
        manual_dir: root of the manual folders; defaults to $GENKERAS_MANUAL_DIR.
        data_dir: where TFDS keeps prepared data; defaults to $GENKERAS_DATA_DIR or TFDS's own.

    Returns:
        The prepared `tfds.core.DatasetBuilder`.

    Raises:
        DataError: the data set is unknown, or it is not prepared and cannot be (no
            archives in the manual folder and no way to download them).
    """
    import tensorflow_datasets as tfds

    info = dataset_info(name)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    builder = tfds.builder(info.name, data_dir=data_dir)
    if builder.is_prepared():
        return builder

    folder = manual_dir_for(name, manual_dir)
    if folder is not None:
        missing = [f for f in expected_archives(name) if not (folder / f).exists()]
        if missing:
            raise DataError(
                f"Data set '{name}' is not prepared and its manual folder {folder} lacks "
                f"{', '.join(missing)}. Put the original archives there (the files TFDS "
                f"downloads), or unset {MANUAL_DIR_ENV} to let TFDS download them."
            )
    config = tfds.download.DownloadConfig(manual_dir=str(folder) if folder else None)
    # One download folder per data set: TFDS extracts archives by file name, and MNIST and
    # Fashion-MNIST share theirs, so a shared folder would hand the second one the first's pixels.
    downloads = Path(builder.data_dir_root) / "downloads" / name
    errors = []

    def download_and_prepare():
        try:
            builder.download_and_prepare(download_dir=str(downloads), download_config=config)
        except Exception as error:  # noqa: BLE001 - TFDS raises many kinds; reported below
            errors.append(error)

    worker = threading.Thread(target=download_and_prepare, daemon=True)
    worker.start()
    if folder is None:
        # Offline, TFDS retries its downloads for minutes before it fails: when the download
        # has not finished at once, a name look-up of its hosts tells in seconds.
        worker.join(1.0)
        if worker.is_alive() and not _download_hosts_resolve(builder):
            raise DataError(
                f"Data set '{name}' is not prepared and cannot be downloaded (no network). "
                + _offline_hint(name)
            )
    worker.join()
    if errors:
        raise DataError(
            f"Could not download or prepare '{name}' ({type(errors[0]).__name__}: {errors[0]}). "
            "Without internet access: " + _offline_hint(name)
        ) from errors[0]
    return builder


def _offline_hint(name: str) -> str:
    return (
        f"Set {MANUAL_DIR_ENV} (or --manual-dir) to a folder with a '{name}/' subfolder "
        f"holding: {', '.join(expected_archives(name))}."
    )


def _download_hosts_resolve(builder, seconds: float = 5.0) -> bool:
    """Whether the hosts of `builder`'s download addresses resolve within `seconds`."""
    hosts = {urllib.parse.urlsplit(u).hostname for u in (builder.url_infos or {})} - {None}
    results = []

    def look_up():
        try:
            for host in hosts:
                socket.getaddrinfo(host, 443)
            results.append(True)
        except OSError:
            results.append(False)

    thread = threading.Thread(target=look_up, daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(results) and results[0]


def load_split(name: str, split: str, *, manual_dir=None, data_dir=None, limit: int | None = None):
    """Loads one split as a `tf.data.Dataset` of dicts with float32 `image` in [0, 1].

    Each element also carries `label` (int32) where the data set has classes, and
    `attributes` (a dict of bools) for CelebA.

    Args:
        name: a key of `DATASETS`.
        split: "train", "validation" or "test".
        manual_dir, data_dir: see `prepare`.
        limit: keep only the first `limit` examples (small runs and tests).

    Example:
    >>> ds = load_split("mnist", "test", limit=8)
    >>> next(iter(ds))["image"].shape
    TensorShape([28, 28, 1])
    """
    import tensorflow as tf

    if split not in SPLITS:
        raise DataError(f"Unknown split '{split}'. Valid splits: {', '.join(SPLITS)}.")
    info = dataset_info(name)
    builder = prepare(name, manual_dir=manual_dir, data_dir=data_dir)
    ds = builder.as_dataset(split=info.splits[split], shuffle_files=False)
    if limit is not None:
        ds = ds.take(limit)
    return ds.map(lambda example: _preprocess(example, info), num_parallel_calls=tf.data.AUTOTUNE)


def _preprocess(example, info: DatasetInfo):
    import tensorflow as tf

    image = example["image"]
    if info.name == "celeb_a":
        image = center_crop_and_resize(image, info.image_shape[:2])
    out = {"image": tf.cast(image, tf.float32) / 255.0}
    if info.label_key:
        out["label"] = tf.cast(example[info.label_key], tf.int32)
    if info.attributes_key:
        out["attributes"] = example[info.attributes_key]
    return out


def center_crop_and_resize(image, size):
    """Crops the largest centred square and resizes it to `size` (CelebA: 218x178 -> 64x64)."""
    import tensorflow as tf

    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.minimum(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    resized = tf.image.resize(square, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


# ---------------------------------------------------------------------------------------------
# Corruptions, drawn per batch from a `tf.random.Generator` so every epoch sees fresh noise while
# a fixed seed still reproduces the whole run.


@dataclasses.dataclass(frozen=True)
class Noise:
    """A corruption for denoising: `gaussian:SIGMA`, `salt_pepper:FRACTION` or `mask:FRACTION`."""

    kind: str
    amount: float

    KINDS = ("gaussian", "salt_pepper", "mask")

    @classmethod
    def parse(cls, text: str | None) -> Noise | None:
        """Parses "gaussian:0.5"; None or "none" gives None. Raises ValueError naming the format."""
        if text is None or text == "none":
            return None
        kind, _, amount = text.partition(":")
        try:
            value = float(amount)
        except ValueError:
            value = -1.0
        if kind not in cls.KINDS or not 0 <= value <= (10 if kind == "gaussian" else 1):
            raise ValueError(
                f"Bad noise '{text}'. Use KIND:AMOUNT with KIND one of {', '.join(cls.KINDS)}, "
                "e.g. gaussian:0.5 (sigma), salt_pepper:0.2 or mask:0.3 (fraction of pixels)."
            )
        return cls(kind, value)

    def __str__(self):
        return f"{self.kind}:{self.amount:g}"

    def apply(self, images, generator: tf.random.Generator):
        """Corrupts a batch of images in [0, 1]; the result stays in [0, 1]."""
        import tensorflow as tf

        shape = tf.shape(images)
        if self.kind == "gaussian":
            return tf.clip_by_value(images + self.amount * generator.normal(shape), 0.0, 1.0)
        if self.kind == "salt_pepper":
            u = generator.uniform(shape)
            salt = tf.cast(generator.uniform(shape) < 0.5, images.dtype)
            return tf.where(u < self.amount, salt, images)
        return tf.where(generator.uniform(shape) < self.amount, tf.zeros_like(images), images)


def binarize(images, generator: tf.random.Generator):
    """Dynamic binarization: each pixel becomes 1 with probability equal to its intensity."""
    import tensorflow as tf

    return tf.cast(generator.uniform(tf.shape(images)) < images, images.dtype)


@dataclasses.dataclass(frozen=True)
class View:
    """How a model sees its data: what goes in, what it must reproduce.

    Attributes:
        noise: corruption applied to the inputs (targets stay clean).
        binarize: draw binary pixels afresh every epoch (likelihood models).
        labels: feed `(images, labels)` as inputs (conditional models).
        targets: yield `(inputs, clean_images)` pairs; False yields inputs alone
            (models that compute their own loss).
    """

    noise: Noise | None = None
    binarize: bool = False
    labels: bool = False
    targets: bool = True


def pipeline(
    ds: tf.data.Dataset,
    view: View,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """Turns `load_split` output into batches for `model.fit` / `evaluate`.

    Decoding happens once (a small split is kept in memory as one tensor, a large one in
    tf.data's cache); shuffling, binarization and noise happen after that, so they change
    every epoch.

    Args:
        ds: a dataset from `load_split`.
        view: what the model consumes.
        batch_size: examples per batch.
        shuffle: reshuffle every epoch (training); False keeps the split's order.
        seed: seeds the shuffle and the corruptions.
        cache: keep decoded images in memory after the first epoch.

    Returns:
        A dataset of `(inputs, targets)` pairs, or `inputs` when `view.targets` is False.
    """
    import tensorflow as tf

    arrays = in_memory(ds) if cache else None
    if arrays is not None:
        # Small splits (MNIST: 170 MB) are held as one tensor and batched by gathering shuffled
        # indices: per-example tf.data work would starve the model on a small CPU.
        count = int(ds.cardinality())
        indices = tf.data.Dataset.range(count)
        if shuffle:
            indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        ds = indices.batch(batch_size).map(
            lambda batch: tf.nest.map_structure(lambda tensor: tf.gather(tensor, batch), arrays)
        )
    else:
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
    generator = tf.random.Generator.from_seed(seed) if (view.noise or view.binarize) else None

    def to_model_inputs(batch):
        clean = batch["image"]
        images = binarize(clean, generator) if view.binarize else clean
        targets = images
        if view.noise is not None:
            images = view.noise.apply(images, generator)
        inputs = (images, batch["label"]) if view.labels else images
        return (inputs, targets) if view.targets else inputs

    # Sequential on purpose: the shared generator then hands out draws in a reproducible order.
    return ds.map(to_model_inputs).prefetch(tf.data.AUTOTUNE)


IN_MEMORY_BYTES = 1 << 30


def in_memory(ds: tf.data.Dataset, max_bytes: int = IN_MEMORY_BYTES):
    """The whole dataset as one structure of tensors (a batch of everything), or None when its
    size is unknown or above `max_bytes` (CelebA then streams from its cache)."""
    import tensorflow as tf

    count = int(ds.cardinality())
    if count <= 0:
        return None
    specs = tf.nest.flatten(ds.element_spec)
    if any(not spec.shape.is_fully_defined() for spec in specs):
        return None
    size = sum(spec.shape.num_elements() * spec.dtype.size for spec in specs) * count
    if size > max_bytes:
        return None
    return ds.batch(count).get_single_element()


def take_examples(name: str, split: str = "test", count: int = 64, **kwargs) -> dict:
    """The first `count` examples of a split as numpy arrays (for pictures and comparisons)."""
    import tensorflow as tf

    ds = load_split(name, split, limit=count, **kwargs).batch(count)
    return tf.nest.map_structure(lambda tensor: tensor.numpy(), next(iter(ds)))
