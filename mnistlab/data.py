"""Balanced MNIST subsets: the course's selection rule, from the bundled file or Keras."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from importlib import resources

import numpy as np

NUM_CLASSES = 10
SOURCES = ("bundled", "keras", "auto")
BUNDLED_FILE = "mnist-10k-by-class.npz"
# Smallest class counts in the two official splits (digit 5 in both).
KERAS_MAX_TRAIN_PER_CLASS = 5421
KERAS_MAX_TEST_PER_CLASS = 892


@dataclasses.dataclass(frozen=True)
class CourseData:
    """Raw images (N, 28, 28) uint8 and integer labels (N,), balanced by class."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # "bundled" or "keras": where the images actually came from

    @property
    def num_train(self) -> int:
        return len(self.y_train)


@functools.lru_cache(maxsize=1)
def load_bundled() -> tuple[np.ndarray, np.ndarray]:
    """The shipped file: first 10,000 official training images, grouped by class (read-only)."""
    with resources.files("mnistlab").joinpath("data", BUNDLED_FILE).open("rb") as handle:
        with np.load(handle) as arrays:
            x, y = arrays["x"], arrays["y"]
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


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


def load_keras_splits():
    """Official (train, test) splits: from Keras' cache if present, else downloaded by Keras."""
    cached = keras_cache_file()
    if os.path.exists(cached):
        # Read the cache directly: keras' loader re-downloads whenever the file's hash
        # differs from the official one, which needs the network.
        with np.load(cached) as arrays:
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    import keras

    try:
        return keras.datasets.mnist.load_data()
    except Exception as error:
        raise RuntimeError(f"could not get MNIST through Keras ({error}); use source='bundled', or put "
                           f"mnist.npz at {cached}") from error


def max_per_class(source: str) -> int:
    """The largest `per_class` a source supports."""
    if source == "bundled":
        y = load_bundled()[1]
        return int(np.bincount(y, minlength=NUM_CLASSES).min()) // 2
    if source == "keras":
        return KERAS_MAX_TEST_PER_CLASS
    if source == "auto":
        return max_per_class("bundled")
    raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


def load_course_data(per_class: int = 100, source: str = "bundled", verbose: bool = True) -> CourseData:
    """The balanced course subsets: `per_class` training and `per_class` test images per digit.

    bundled: train = first `per_class` of each class of the shipped file, test = the next
    `per_class` (disjoint, both from the official training split).
    keras: train from the official training split, test from the official test split.
    auto: keras if it can be had, else bundled; says which on stderr.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)):
        raise ValueError(f"per_class must be a whole number, got {per_class!r}")
    if source == "auto":
        try:
            data = load_course_data(per_class, "keras", verbose=False)
        except ValueError:
            raise
        except Exception as error:  # no network and no cache: fall back to the shipped file
            if verbose:
                print(f"mnistlab: keras MNIST unavailable ({type(error).__name__}); using bundled data",
                      file=sys.stderr)
            return load_course_data(per_class, "bundled", verbose=False)
        if verbose:
            print("mnistlab: using keras MNIST", file=sys.stderr)
        return data
    limit = max_per_class(source)
    if not 1 <= per_class <= limit:
        raise ValueError(f"per_class must be between 1 and {limit} for source {source!r}, got {per_class}")
    if source == "bundled":
        x, y = load_bundled()
        x_train, y_train = first_per_class(x, y, per_class)
        x_test, y_test = first_per_class(x, y, per_class, skip=per_class)
    else:
        (x_tr, y_tr), (x_te, y_te) = load_keras_splits()
        x_train, y_train = first_per_class(x_tr, y_tr, per_class)
        x_test, y_test = first_per_class(x_te, y_te, per_class)
    return CourseData(x_train, y_train, x_test, y_test, source)


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
