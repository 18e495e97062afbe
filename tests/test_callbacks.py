"""EpochMetrics against an independent NumPy computation, in a plain Keras `fit` and in `ml.train`."""

import csv
import dataclasses

import keras
import numpy as np
import pytest
from numpy_reference import mlp_metrics

import mnistlab as ml
from mnistlab import experiment


class Snapshots(keras.callbacks.Callback):
    """The (kernel, bias) pairs of every Dense layer at the start and after every epoch."""

    def on_train_begin(self, logs=None):
        self.weights = [self._dense()]

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self._dense())

    def _dense(self):
        return [(layer.kernel.numpy().copy(), layer.bias.numpy().copy()) for layer in self.model.layers
                if layer.name.startswith(("hidden_", "output"))]


def metrics_for(data):
    return ml.EpochMetrics((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test))


def plain_fit(model, data, callbacks, epochs=2, batch_size=10):
    return model.fit(experiment.shuffled_batches(data.x_train, data.y_train, batch_size, 0), epochs=epochs,
                     steps_per_epoch=experiment.steps_per_epoch(len(data.y_train), batch_size), shuffle=False,
                     verbose=0, callbacks=callbacks)


def assert_matches(measured: dict, expected: dict, context: str):
    for key, value in expected.items():
        # |dW/W| divides by weights near zero, where float32 and float64 part most.
        tolerance = 1e-3 if key.startswith("weight_change") else 2e-5
        assert measured[key] == pytest.approx(value, rel=tolerance, abs=1e-7), f"{context}: {key}"


@pytest.mark.parametrize("activation, l2", [("sigmoid", 0.0), ("tanh", 0.01), ("relu", 0.003)])
def test_every_metric_matches_numpy(tiny_data, activation, l2):
    ml.set_seed(0)
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=3, activation=activation, l2=l2, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    metrics, snapshots = metrics_for(tiny_data), Snapshots()
    history = plain_fit(model, tiny_data, [metrics, snapshots]).history
    weights = snapshots.weights
    initial = mlp_metrics(model, tiny_data, weights[0])
    initial["loss"] = initial["cross_entropy"] + initial["penalty"]
    initial["accuracy"] = 1.0 - initial["zero_one_error"]
    assert set(metrics.initial) == set(initial)
    assert_matches(metrics.initial, initial, "initial")
    for epoch in (1, 2):
        expected = mlp_metrics(model, tiny_data, weights[epoch], weights[epoch - 1])
        assert_matches({key: values[epoch - 1] for key, values in history.items()}, expected, f"epoch {epoch}")
    assert set(history) == set(expected) | {"loss", "accuracy"}
    assert len(history["test_zero_one_error"]) == 2
    # Vanishing gradients at initialisation: the first sigmoid layer learns slower than the last.
    if activation == "sigmoid":
        assert metrics.initial["speed_hidden_1"] < metrics.initial["speed_hidden_3"]


def test_zero_one_error_is_an_exact_count(tiny_data):
    ml.set_seed(0)
    model = ml.build_model(ml.Config(per_class=5, hidden_layers=1), tiny_data)
    metrics = metrics_for(tiny_data)
    history = plain_fit(model, tiny_data, [metrics], epochs=1).history
    for prefix, (x, labels) in (("", (tiny_data.x_train, tiny_data.y_train)),
                                ("val_", (tiny_data.x_val, tiny_data.y_val)),
                                ("test_", (tiny_data.x_test, tiny_data.y_test))):
        predictions = model.predict_on_batch(x)
        wrong = sum(int(np.argmax(row) != label) for row, label in zip(predictions, labels))
        assert history[f"{prefix}zero_one_error"] == [wrong / len(labels)]


def test_weight_change_skips_zero_weights(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    kernel = model.get_layer("hidden_1").kernel
    kernel.assign(np.where(np.arange(kernel.shape[1]) % 2 == 0, 0.0, kernel.numpy()))
    history = plain_fit(model, tiny_data, [metrics_for(tiny_data)], epochs=1).history
    assert np.isfinite(history["weight_change_hidden_1"][0]) and history["weight_change_hidden_1"][0] > 0


def test_softmax_regression_has_no_layer_keys(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    metrics = metrics_for(tiny_data)
    history = plain_fit(model, tiny_data, [metrics], epochs=1).history
    assert not any("hidden" in key for key in list(history) + list(metrics.initial))
    assert "test_cross_entropy" in history and "speed_hidden_1" not in metrics.initial


def test_non_finite_predictions_count_as_wrong():
    probabilities = np.array([[0.9, 0.1], [np.nan, np.nan], [0.2, np.inf]])
    assert ml.zero_one_error(probabilities, [0, 0, 1]) == pytest.approx(2 / 3)


def test_divergence_stops_training_and_is_flagged(tiny_data):
    ml.set_seed(0)
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, activation="relu", seed=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e8), loss="categorical_crossentropy")
    metrics = metrics_for(tiny_data)
    history = plain_fit(model, tiny_data, [metrics], epochs=20).history
    assert metrics.diverged and metrics.diverged_epoch == len(history["loss"]) - 1 < 19
    assert not np.isfinite(history["loss"][-1])
    # NaN weights predict nothing: every image counts as wrong, none as right.
    assert history["val_zero_one_error"][-1] == 1.0 and history["test_accuracy"][-1] == 0.0


def test_healthy_training_is_not_flagged(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, 1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    metrics = metrics_for(tiny_data)
    plain_fit(model, tiny_data, [metrics], epochs=1)
    assert not metrics.diverged and metrics.diverged_epoch is None


def test_needs_the_training_split(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, 1)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="training split"):
        plain_fit(model, tiny_data, [ml.EpochMetrics(None, (tiny_data.x_val, tiny_data.y_val))], epochs=1)


def test_csv_logger_and_later_callbacks_see_every_key(tiny_data, tmp_path):
    seen = []

    class Reader(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(logs))

    path = tmp_path / "log.csv"
    result = ml.train(ml.Config(per_class=5, epochs=2, hidden_layers=1), tiny_data,
                      callbacks=[keras.callbacks.CSVLogger(str(path)), Reader()])
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and set(rows[0]) == {"epoch"} | set(result.history)
    assert float(rows[1]["test_zero_one_error"]) == result.history["test_zero_one_error"][1]
    assert seen[0] == sorted(result.history)


def test_early_stopping_can_watch_a_validation_metric(tiny_data):
    stopper = keras.callbacks.EarlyStopping(monitor="val_zero_one_error", patience=0, mode="min")
    config = ml.Config(per_class=5, epochs=30, hidden_layers=1, learning_rate=2.0, l2_lambda=0.0)
    result = ml.train(config, tiny_data, callbacks=[stopper])
    errors = result.history["val_zero_one_error"]
    assert len(errors) < 30 and errors[-1] >= min(errors[:-1])


def test_cnn_metrics_without_layer_keys(tiny_data):
    config = ml.Config(model="cnn", per_class=5, epochs=1, l2_lambda=1.0)
    result = ml.train(config, tiny_data)
    assert not any("hidden" in key for key in result.history)
    probabilities = result.model.predict(tiny_data.x_test, verbose=0)
    assert result.history["test_zero_one_error"][0] == ml.zero_one_error(probabilities, tiny_data.y_test)
    kernels = [layer.kernel.numpy().astype(np.float64) for layer in result.model.layers
               if getattr(layer, "kernel_regularizer", None) is not None]
    assert len(kernels) == 5  # three convolutions, two dense layers
    coefficient = ml.l2_coefficient(1.0, tiny_data.num_train)
    assert result.history["penalty"][0] == pytest.approx(coefficient * sum(np.sum(k ** 2) for k in kernels), rel=1e-5)
    assert dataclasses.asdict(result.config) == dataclasses.asdict(config)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_pass_size_changes_not_a_bit(tiny_data, kind):
    """Smaller forward passes (run side by side on the cores) give the same bits as one pass per set."""
    ml.set_seed(0)
    model = ml.build_model(ml.Config(model=kind, per_class=5, hidden_layers=2, l2_lambda=1.0), tiny_data)
    measured = []
    for pass_size in (1000, 50, 7, 2):  # (one-image passes use other kernels, which round differently)
        metrics = ml.EpochMetrics((tiny_data.x_train, tiny_data.y_train), (tiny_data.x_val, tiny_data.y_val),
                                  (tiny_data.x_test, tiny_data.y_test), pass_size=pass_size)
        metrics.set_model(model)
        metrics.on_train_begin()
        measured.append(metrics.initial)
    assert all(values == measured[0] for values in measured)
    with pytest.raises(ValueError, match="pass_size"):
        ml.EpochMetrics((tiny_data.x_train, tiny_data.y_train), pass_size=0)


def test_split_sums_add_per_chunk_as_before(tiny_data, monkeypatch):
    """C0 of a set larger than a chunk: per-chunk sums added in order, whatever the pass size."""
    import tensorflow as tf

    from mnistlab import callbacks

    monkeypatch.setattr(callbacks, "CHUNK", 20)  # 50 images: chunks of 20, 20 and 10
    model = ml.build_mlp(tiny_data.x_train, 1)
    pixels, targets = tf.constant(tiny_data.x_val.astype(np.float32)), tf.constant(ml.one_hot(tiny_data.y_val))
    results = [tf.function(lambda size=size: callbacks.split_sums(model, pixels, targets, size), autograph=False)()
               for size in (20, 6, 2)]
    assert all(int(wrong) == int(results[0][0]) and float(ce) == float(results[0][1]) for wrong, ce in results)
    by_chunk = tf.constant(0.0)
    for start in (0, 20, 40):
        part = model(pixels[start:start + 20], training=False)
        by_chunk += tf.reduce_sum(keras.losses.categorical_crossentropy(targets[start:start + 20], part))
    probabilities = model.predict_on_batch(tiny_data.x_val).astype(np.float64)
    assert float(results[0][1]) == pytest.approx(-np.mean(np.log(probabilities[np.arange(50), tiny_data.y_val])),
                                                 rel=1e-5)
    assert int(results[0][0]) == round(ml.zero_one_error(probabilities, tiny_data.y_val) * 50)


def test_a_second_fit_of_the_same_model_reuses_the_measurement(tiny_data):
    ml.set_seed(0)
    model = ml.build_model(ml.Config(per_class=5, hidden_layers=2), tiny_data)
    metrics = metrics_for(tiny_data)
    plain_fit(model, tiny_data, [metrics], epochs=1)
    measure = metrics._measure
    fresh = metrics_for(tiny_data)
    fresh.set_model(model)
    fresh.on_train_begin()  # the weights after the first fit, measured by a new callback
    snapshots = Snapshots()
    history = plain_fit(model, tiny_data, [metrics, snapshots], epochs=1).history
    assert metrics._measure is measure  # not traced again
    assert metrics.initial == fresh.initial
    # The weight changes count from the start of this fit, not of the first.
    expected = mlp_metrics(model, tiny_data, snapshots.weights[1], snapshots.weights[0])
    assert_matches({key: values[0] for key, values in history.items()}, expected, "second fit")
    other = ml.build_model(ml.Config(per_class=5, hidden_layers=2, seed=1), tiny_data)
    plain_fit(other, tiny_data, [metrics], epochs=1)
    assert metrics._measure is not measure  # another model: compiled for it
