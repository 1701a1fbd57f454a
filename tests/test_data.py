"""The data path: real MNIST through TFDS, the tf.data pipeline, corruptions, clear errors."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from genkeras import data


def test_mnist_splits_shapes_and_range():
    sizes = {split: int(data.load_split("mnist", split).cardinality()) for split in data.SPLITS}
    assert sizes == {"train": 55000, "validation": 5000, "test": 10000}
    example = next(iter(data.load_split("mnist", "test")))
    assert example["image"].shape == (28, 28, 1) and example["image"].dtype == tf.float32
    assert example["label"].dtype == tf.int32
    images = np.stack([e["image"] for e in data.load_split("mnist", "test", limit=256)])
    assert images.min() == 0.0 and images.max() == 1.0


def test_validation_is_disjoint_from_train():
    train_tail = np.stack([e["image"] for e in data.load_split("mnist", "train").skip(54990)])
    validation_head = np.stack(
        [e["image"] for e in data.load_split("mnist", "validation", limit=10)]
    )
    assert not any(np.array_equal(a, b) for a in train_tail for b in validation_head)


def test_pipeline_yields_input_target_pairs():
    ds = data.pipeline(
        data.load_split("mnist", "test", limit=100), data.View(), batch_size=32, shuffle=False
    )
    inputs, targets = next(iter(ds))
    assert inputs.shape == targets.shape == (32, 28, 28, 1)
    np.testing.assert_array_equal(inputs, targets)
    assert sum(1 for _ in ds) == 4  # 32 + 32 + 32 + 4


def test_noise_is_fresh_every_epoch_and_reproducible():
    view = data.View(noise=data.Noise.parse("gaussian:0.5"))

    def two_epochs(seed):
        ds = data.pipeline(
            data.load_split("mnist", "test", limit=64),
            view,
            batch_size=64,
            shuffle=False,
            seed=seed,
        )
        return [next(iter(ds)) for _ in range(2)]

    (noisy1, clean1), (noisy2, clean2) = two_epochs(seed=1)
    np.testing.assert_array_equal(clean1, clean2)  # targets stay clean
    assert not np.allclose(noisy1, noisy2)  # a fresh draw each epoch
    assert 0.0 <= float(tf.reduce_min(noisy1)) and float(tf.reduce_max(noisy1)) <= 1.0
    again = two_epochs(seed=1)
    np.testing.assert_array_equal(noisy1, again[0][0])  # the same seed repeats the run


@pytest.mark.parametrize("text", ["salt_pepper:0.3", "mask:0.3"])
def test_fraction_noises_touch_about_that_fraction(text):
    noise = data.Noise.parse(text)
    images = tf.fill([16, 28, 28, 1], 0.5)
    changed = float(
        tf.reduce_mean(
            tf.cast(noise.apply(images, tf.random.Generator.from_seed(0)) != 0.5, tf.float32)
        )
    )
    assert changed == pytest.approx(0.3, abs=0.02)


def test_binarization_is_bernoulli_of_the_intensity():
    view = data.View(binarize=True, targets=False)
    clean = np.stack([e["image"] for e in data.load_split("mnist", "test", limit=512)])
    ds = data.pipeline(
        data.load_split("mnist", "test", limit=512), view, batch_size=512, shuffle=False
    )
    first, second = next(iter(ds)).numpy(), next(iter(ds)).numpy()
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert first.mean() == pytest.approx(clean.mean(), abs=0.005)
    assert not np.array_equal(first, second)


def test_labels_view_feeds_images_and_labels():
    ds = data.pipeline(
        data.load_split("mnist", "test", limit=8),
        data.View(labels=True, targets=False),
        batch_size=8,
        shuffle=False,
    )
    images, labels = next(iter(ds))
    assert images.shape == (8, 28, 28, 1) and labels.dtype == tf.int32
    expected = [int(e["label"]) for e in data.load_split("mnist", "test", limit=8)]
    assert labels.numpy().tolist() == expected and set(expected) <= set(range(10))


@pytest.mark.parametrize("text", ["gauss:0.5", "gaussian", "mask:2", "salt_pepper:-1"])
def test_bad_noise_names_the_format(text):
    with pytest.raises(ValueError, match="KIND:AMOUNT"):
        data.Noise.parse(text)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        data.DataError, match="Valid data sets: celeb_a, cifar10, fashion_mnist, mnist"
    ):
        data.load_split("imagenet", "train")


def test_missing_archives_name_the_folder_and_files(tmp_path):
    empty = tmp_path / "manual"
    (empty / "fashion_mnist").mkdir(parents=True)
    with pytest.raises(data.DataError) as error:
        data.load_split("fashion_mnist", "test", manual_dir=empty, data_dir=tmp_path / "fresh")
    message = str(error.value)
    assert str(empty / "fashion_mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message


def test_cifar10_loads_through_tfds(monkeypatch):
    monkeypatch.delenv(data.MANUAL_DIR_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=6):
        ds = data.pipeline(
            data.load_split("cifar10", "train"), data.View(), batch_size=6, shuffle=False
        )
        inputs, _ = next(iter(ds))
    assert inputs.shape == (6, 32, 32, 3)
    assert 0.0 <= float(tf.reduce_min(inputs)) and float(tf.reduce_max(inputs)) <= 1.0


def test_celeb_a_is_center_cropped_to_64(monkeypatch):
    monkeypatch.delenv(data.MANUAL_DIR_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=4):
        example = next(iter(data.load_split("celeb_a", "validation")))
    assert example["image"].shape == (64, 64, 3)
    assert example["attributes"]["Smiling"].dtype == tf.bool


def test_center_crop_keeps_the_middle():
    image = np.zeros((218, 178, 3), np.uint8)
    image[20:198, :] = 255  # the central 178x178 square is white, the bands above and below black
    out = data.center_crop_and_resize(tf.constant(image), (64, 64)).numpy()
    assert out.min() == 255


@pytest.mark.slow
def test_mnist_and_fashion_mnist_stay_apart_in_one_data_folder(tmp_path):
    """Both archives have the same file names, and TFDS extracts downloads by file name: each
    data set needs its own download folder, or the second one prepared copies the first."""
    mnist = data.take_examples("mnist", "test", count=64, data_dir=tmp_path)["image"]
    fashion = data.take_examples("fashion_mnist", "test", count=64, data_dir=tmp_path)["image"]
    assert np.abs(mnist.mean(axis=0) - fashion.mean(axis=0)).mean() > 0.05
    assert fashion.mean() > mnist.mean()  # clothes cover more of the frame than digits
