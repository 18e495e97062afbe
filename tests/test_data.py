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


def test_bundled_test_file_is_the_whole_official_test_set():
    from importlib import resources

    blob = resources.files("mnistlab").joinpath("data", "mnist-test-10k.npz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == "3ba302235efdc3e7e4e84db9ce6a6d6cbc9dd1162d4e79dd0b6a606afc745423"
    x, y = ml.load_full_test()
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    # Known facts of the official t10k files (the data README's checks).
    assert list(y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert list(np.bincount(y)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_per_class_limits_are_the_files_smallest_classes():
    train_counts = np.bincount(data_module.load_bundled()[1])
    test_counts = np.bincount(data_module.load_bundled_test()[1])
    assert train_counts.min() == data_module.BUNDLED_TRAIN_SMALLEST_CLASS
    assert test_counts.min() == data_module.TEST_SMALLEST_CLASS
    assert data_module.max_per_class("bundled") == 431  # 863 images of digit 5 shared by training and validation


def test_bundled_splits_follow_the_original_rule_and_are_disjoint():
    data = ml.load_course_data(per_class=100)
    for x, y in data.splits().values():
        assert x.shape == (1000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
        assert np.array_equal(np.bincount(y), [100] * 10)
    x, y = data_module.load_bundled()
    # Independent of the library's selection: the notebook's scan over the source arrays.
    for (split_x, split_y), skip in (((data.x_train, data.y_train), 0), ((data.x_val, data.y_val), 100)):
        expected_x, expected_y = original_rule(x, y, 100, skip=skip)
        assert np.array_equal(split_x, expected_x) and np.array_equal(split_y, expected_y)
    test_x, test_y = data_module.load_bundled_test()
    expected_x, expected_y = original_rule(test_x, test_y, 100)
    assert np.array_equal(data.x_test, expected_x) and np.array_equal(data.y_test, expected_y)
    train_rows = {row.tobytes() for row in data.x_train}
    assert not any(row.tobytes() in train_rows for row in data.x_val)


def test_splits_are_read_only_views_of_nothing_shared():
    data = ml.load_course_data(per_class=3)
    data.x_train[0, 0, 0] = 7  # fancy indexing copies: the cached source stays untouched
    assert ml.load_course_data(per_class=3).x_train[0, 0, 0] == data_module.load_bundled()[0][0, 0, 0]


@pytest.mark.parametrize("per_class", [0, -1, 432, 10_000, 2.5, True])
def test_per_class_out_of_range(per_class):
    with pytest.raises(ValueError, match="between 1 and 431"):
        ml.load_course_data(per_class=per_class)


def test_config_checks_per_class_without_opening_a_data_file(monkeypatch):
    def no_files(*args):
        raise AssertionError("a data file was opened")

    monkeypatch.setattr(data_module, "_load_packaged", no_files)
    monkeypatch.setattr(data_module, "load_keras_splits", no_files)
    assert ml.Config(per_class=431).per_class == 431
    assert ml.Config(per_class=892, source="keras").per_class == 892
    with pytest.raises(ValueError, match="between 1 and 431"):
        ml.Config(per_class=432)
    with pytest.raises(ValueError, match="between 1 and 892"):
        ml.Config(per_class=893, source="keras")


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
    x, y = original_rule(fake_keras_cache["x_train"], fake_keras_cache["y_train"], 3, skip=3)
    assert np.array_equal(data.x_val, x) and np.array_equal(data.y_val, y)
    x, y = original_rule(fake_keras_cache["x_test"], fake_keras_cache["y_test"], 3)
    assert np.array_equal(data.x_test, x) and np.array_equal(data.y_test, y)
    full_x, full_y = ml.load_full_test("keras")
    assert np.array_equal(full_x, fake_keras_cache["x_test"]) and np.array_equal(full_y, fake_keras_cache["y_test"])


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", "truncated", "missing", "bad labels"])
def test_unreadable_keras_cache_is_one_clear_error_and_auto_falls_back(fake_keras_cache, tmp_path, content, capsys):
    path = tmp_path / "datasets" / "mnist.npz"
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif content == "missing":
        np.savez(path, x_train=fake_keras_cache["x_train"])
    elif content == "bad labels":
        np.savez(path, **dict(fake_keras_cache, y_test=fake_keras_cache["y_test"] + 10))
    else:
        path.write_bytes(content)
    with pytest.raises(data_module.MnistUnavailable, match=f"{path}.*delete it or use source='bundled'") as caught:
        ml.load_course_data(per_class=2, source="keras")
    assert "\n" not in str(caught.value)
    assert ml.load_course_data(per_class=2, source="auto").source == "bundled"
    assert "using bundled data" in capsys.readouterr().err


def test_keras_source_too_small_for_request(fake_keras_cache):
    # 8 training images per digit cannot give 5 training and 5 validation images each.
    with pytest.raises(ValueError, match="needs 10 images of digit 0"):
        ml.load_course_data(per_class=5, source="keras")


def test_auto_prefers_keras_when_cached(fake_keras_cache, capsys):
    assert ml.load_course_data(per_class=2, source="auto").source == "keras"
    assert "keras" in capsys.readouterr().err


def test_auto_falls_back_to_bundled(monkeypatch, capsys):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras_datasets(), "load_data", offline)
    monkeypatch.setenv("KERAS_HOME", "/nonexistent-keras-home")
    data = ml.load_course_data(per_class=2, source="auto")
    assert data.source == "bundled"
    assert "using bundled" in capsys.readouterr().err


def keras_datasets():
    import keras

    return keras.datasets.mnist


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
    with pytest.raises(data_module.MnistUnavailable, match="use source='bundled', or put mnist.npz at"):
        ml.load_course_data(per_class=2, source="keras")
