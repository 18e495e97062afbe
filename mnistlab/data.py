"""Balanced MNIST splits by the original notebook's rule, from the bundled files or Keras."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from importlib import resources

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
SOURCES = ("bundled", "keras", "auto")
BUNDLED_TRAIN_FILE = "mnist-10k-by-class.npz"  # first 10,000 official training images, grouped by digit
BUNDLED_TEST_FILE = "mnist-test-10k.npz"  # the whole official test set, official order
# Images of the rarest digit (5) in each file: constants, so that checking a `per_class`
# needs no data file (tests compare them with the files).
BUNDLED_TRAIN_SMALLEST_CLASS = 863
KERAS_TRAIN_SMALLEST_CLASS = 5421
TEST_SMALLEST_CLASS = 892
# Training and validation images both come from the training split, so they share its rarest digit.
MAX_PER_CLASS = {
    "bundled": min(BUNDLED_TRAIN_SMALLEST_CLASS // 2, TEST_SMALLEST_CLASS),
    "keras": min(KERAS_TRAIN_SMALLEST_CLASS // 2, TEST_SMALLEST_CLASS),
    "auto": min(BUNDLED_TRAIN_SMALLEST_CLASS // 2, TEST_SMALLEST_CLASS),  # auto may fall back to bundled
}


class MnistUnavailable(RuntimeError):
    """Keras' MNIST could not be had: no cache and no network, or an unreadable cache file."""


@dataclasses.dataclass(frozen=True)
class CourseData:
    """Three disjoint balanced splits: raw images (N, 28, 28) uint8 and integer labels (N,).

    x_train: the first `per_class` images of each digit of the official training set;
    x_val: the next `per_class` of each digit of the training set;
    x_test: the first `per_class` of each digit of the official test set.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "bundled" or "keras": where the images actually came from

    @property
    def num_train(self) -> int:
        return len(self.y_train)

    def splits(self) -> dict:
        """{"train": (x, y), "val": (x, y), "test": (x, y)}."""
        return {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}


def _read_npz(handle, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    with np.load(handle) as arrays:
        return tuple(arrays[name] for name in names)


@functools.lru_cache(maxsize=None)
def _load_packaged(name: str) -> tuple[np.ndarray, np.ndarray]:
    with resources.files("mnistlab").joinpath("data", name).open("rb") as handle:
        x, y = _read_npz(handle, ("x", "y"))
    x.flags.writeable = False  # cached and shared by every caller
    y.flags.writeable = False
    return x, y


def load_bundled() -> tuple[np.ndarray, np.ndarray]:
    """The shipped training file: first 10,000 official training images, grouped by digit (read-only)."""
    return _load_packaged(BUNDLED_TRAIN_FILE)


def load_bundled_test() -> tuple[np.ndarray, np.ndarray]:
    """The shipped test file: the whole official test set, in its official order (read-only)."""
    return _load_packaged(BUNDLED_TEST_FILE)


def first_per_class(x: np.ndarray, y: np.ndarray, per_class: int, skip: int = 0):
    """The first `per_class` images of each class after skipping `skip` of them, in dataset order.

    Rows come out grouped by class (all 0s, then all 1s, ...); within a class the
    dataset order is kept, which is the original notebook's rule (it scanned the data
    in order and kept an image while its class had fewer than 100).
    """
    picked = []
    for digit in range(NUM_CLASSES):
        rows = np.flatnonzero(y == digit)[skip : skip + per_class]
        if len(rows) < per_class:
            raise ValueError(
                f"per_class={per_class} needs {skip + per_class} images of digit {digit}, "
                f"the source has {skip + len(rows)}"
            )
        picked.append(rows)
    index = np.concatenate(picked)
    return x[index], y[index].astype(np.int64)


def keras_cache_file() -> str:
    """Where Keras keeps `mnist.npz` once downloaded (honours KERAS_HOME)."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return os.path.join(keras_home, "datasets", "mnist.npz")


def _checked_split(x, y, name: str, path: str):
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8 or y.shape != (len(x),):
        raise MnistUnavailable(f"{path} is not Keras' MNIST ({name} images {x.shape} {x.dtype}, labels {y.shape}); "
                               f"delete it or use source='bundled'")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise MnistUnavailable(f"{path} has {name} labels outside 0..9; delete it or use source='bundled'")
    return x, y


def load_keras_splits():
    """Official (train, test) splits: from Keras' cache if present, else downloaded by Keras."""
    cached = keras_cache_file()
    if os.path.exists(cached):
        # Read the cache directly: keras' loader re-downloads whenever the file's hash
        # differs from the official one, which needs the network.
        try:
            x_train, y_train, x_test, y_test = _read_npz(cached, ("x_train", "y_train", "x_test", "y_test"))
        except Exception as error:  # truncated, not a zip, missing arrays, unreadable
            raise MnistUnavailable(f"cannot read the Keras MNIST cache {cached} ({type(error).__name__}: {error}); "
                                   f"delete it or use source='bundled'") from None
        return _checked_split(x_train, y_train, "training", cached), _checked_split(x_test, y_test, "test", cached)
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:
        raise MnistUnavailable(f"could not get MNIST through Keras ({error}); use source='bundled', or put "
                               f"mnist.npz at {cached}") from None


def max_per_class(source: str) -> int:
    """The largest `per_class` a source supports (no data file is read)."""
    if source not in MAX_PER_CLASS:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    return MAX_PER_CLASS[source]


def check_per_class(per_class, source: str) -> int:
    """`per_class` as an int if `source` can supply it for all three splits, else a ValueError naming the range."""
    limit = max_per_class(source)
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
        raise ValueError(f"per_class must be a whole number between 1 and {limit}, got {per_class!r}")
    if not 1 <= per_class <= limit:
        raise ValueError(f"per_class must be between 1 and {limit} for source {source!r} (training and validation "
                         f"images share the training split's rarest digit), got {per_class}")
    return int(per_class)


def load_course_data(per_class: int = 100, source: str = "bundled", verbose: bool = True) -> CourseData:
    """The course's three balanced splits, `per_class` images of each digit in each.

    train: the first `per_class` of each digit of the official training set;
    val: the next `per_class` of each digit of the official training set;
    test: the first `per_class` of each digit of the official test set (the original's rule).
    bundled: the shipped files (offline, deterministic); keras: Keras' official arrays;
    auto: keras if it can be had, else bundled, saying which on stderr.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "auto":
        check_per_class(per_class, "auto")
        try:
            data = load_course_data(per_class, "keras", verbose=False)
        except MnistUnavailable as error:
            if verbose:
                print(f"mnistlab: keras MNIST unavailable ({error}); using bundled data", file=sys.stderr)
            return load_course_data(per_class, "bundled", verbose=False)
        if verbose:
            print("mnistlab: using keras MNIST", file=sys.stderr)
        return data
    per_class = check_per_class(per_class, source)
    if source == "bundled":
        (x_source, y_source), (x_official_test, y_official_test) = load_bundled(), load_bundled_test()
    else:
        (x_source, y_source), (x_official_test, y_official_test) = load_keras_splits()
    x_train, y_train = first_per_class(x_source, y_source, per_class)
    x_val, y_val = first_per_class(x_source, y_source, per_class, skip=per_class)
    x_test, y_test = first_per_class(x_official_test, y_official_test, per_class)
    return CourseData(x_train, y_train, x_val, y_val, x_test, y_test, source)


def load_full_test(source: str = "bundled") -> tuple[np.ndarray, np.ndarray]:
    """The whole official test set, 10,000 images (N, 28, 28) uint8 and int64 labels, official order.

    For the final evaluation of a trained or saved model: the course's 1,000 test images are
    its first 100 per digit, so this shows how far a 1,000-image estimate is from the full one.
    """
    if source == "bundled":
        x, y = load_bundled_test()
    elif source == "keras":
        x, y = load_keras_splits()[1]
    else:
        raise ValueError(f"unknown source {source!r} for the full test set; choose bundled or keras")
    return x, np.asarray(y, dtype=np.int64)


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels (N,) to float32 one-hot rows (N, num_classes)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    encoded = np.zeros((len(labels), num_classes), dtype=np.float32)
    encoded[np.arange(len(labels)), labels] = 1.0
    return encoded


def standardisation_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and variance of the training images, flattened to 784.

    A pixel that never varies in training gets variance 1 (as scikit-learn's
    StandardScaler does): dividing by a zero spread would blow any test image
    with ink there up to ~1e9.
    """
    flat = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    mean = flat.mean(axis=0)
    variance = flat.var(axis=0)
    variance[variance == 0] = 1.0
    return mean.astype(np.float32), variance.astype(np.float32)
