import hashlib

import numpy as np
import pytest

import mnistlab as ml
from mnistlab import data as data_module


def original_rule(x, y, per_class, skip=0):
    """The original notebook's scan: keep an image while its class has fewer than wanted."""
    seen = [0] * 10
    rows = []
    for index, label in enumerate(y):
        if seen[label] < skip + per_class:
            if seen[label] >= skip:
                rows.append(index)
            seen[label] += 1
    rows = sorted(rows, key=lambda i: (y[i], i))
    return x[rows], y[rows]


def test_bundled_file_is_the_shipped_one():
    from importlib import resources

    blob = resources.files("mnistlab").joinpath("data", "mnist-10k-by-class.npz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == "94e2480bb2d38e772966d2564f7818de27e5e7d95984370b0cfb33e5bb4a39df"


def test_bundled_selection_is_balanced_disjoint_and_follows_the_rule():
    data = ml.load_course_data(per_class=100)
    assert data.x_train.shape == (1000, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (1000, 28, 28)
    assert np.array_equal(np.bincount(data.y_train), [100] * 10)
    assert np.array_equal(np.bincount(data.y_test), [100] * 10)
    x, y = data_module.load_bundled()
    expected_x, expected_y = original_rule(x, y, 100)
    assert np.array_equal(data.x_train, expected_x) and np.array_equal(data.y_train, expected_y)
    test_x, test_y = original_rule(x, y, 100, skip=100)
    assert np.array_equal(data.x_test, test_x) and np.array_equal(data.y_test, test_y)
    train_rows = {row.tobytes() for row in data.x_train}
    assert not any(row.tobytes() in train_rows for row in data.x_test)


@pytest.mark.parametrize("per_class", [0, -1, 432, 10_000])
def test_per_class_out_of_range(per_class):
    with pytest.raises(ValueError, match="between 1 and 431"):
        ml.load_course_data(per_class=per_class)


def test_unknown_source():
    with pytest.raises(ValueError, match="bundled, keras, auto"):
        ml.load_course_data(source="internet")


@pytest.fixture
def fake_keras_cache(tmp_path, monkeypatch):
    """A tiny mnist.npz in a temporary Keras cache, shuffled so the selection rule matters."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 80), ("test", 60)):
        arrays[f"x_{split}"] = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        arrays[f"y_{split}"] = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    (tmp_path / "datasets").mkdir()
    np.savez(tmp_path / "datasets" / "mnist.npz", **arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    return arrays


def test_keras_source_reads_the_cache_with_the_same_rule(fake_keras_cache):
    data = ml.load_course_data(per_class=3, source="keras")
    assert data.source == "keras"
    x, y = original_rule(fake_keras_cache["x_train"], fake_keras_cache["y_train"], 3)
    assert np.array_equal(data.x_train, x) and np.array_equal(data.y_train, y)
    x, y = original_rule(fake_keras_cache["x_test"], fake_keras_cache["y_test"], 3)
    assert np.array_equal(data.x_test, x) and np.array_equal(data.y_test, y)


def test_keras_source_too_small_for_request(fake_keras_cache):
    with pytest.raises(ValueError, match="needs 7 images of digit 0"):
        ml.load_course_data(per_class=7, source="keras")


def test_auto_prefers_keras_when_cached(fake_keras_cache, capsys):
    assert ml.load_course_data(per_class=2, source="auto").source == "keras"
    assert "keras" in capsys.readouterr().err


def test_auto_falls_back_to_bundled(monkeypatch, capsys):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data_module, "load_keras_splits", offline)
    data = ml.load_course_data(per_class=2, source="auto")
    assert data.source == "bundled"
    assert "using bundled" in capsys.readouterr().err


def test_one_hot():
    encoded = ml.one_hot(np.array([3, 0, 9]))
    assert encoded.shape == (3, 10) and encoded.dtype == np.float32
    assert np.array_equal(encoded.argmax(axis=1), [3, 0, 9]) and np.array_equal(encoded.sum(axis=1), [1, 1, 1])
    with pytest.raises(ValueError):
        ml.one_hot(np.array([10]))


def test_standardisation_is_fitted_on_training_images(tiny_data):
    mean, variance = ml.standardisation_stats(tiny_data.x_train)
    flat = tiny_data.x_train.reshape(len(tiny_data.x_train), -1).astype(np.float64)
    assert np.allclose(mean, flat.mean(axis=0))
    spread = flat.var(axis=0)
    assert np.allclose(variance[spread > 0], spread[spread > 0], rtol=1e-6)
    # Constant pixels get unit variance, as scikit-learn's StandardScaler does.
    assert np.all(variance[spread == 0] == 1.0) and (spread == 0).any()


def test_keras_source_without_cache_or_network_says_what_to_do(tmp_path, monkeypatch):
    import keras

    def no_network():
        raise OSError("Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    with pytest.raises(RuntimeError, match="use source='bundled', or put mnist.npz at"):
        ml.load_course_data(per_class=2, source="keras")
