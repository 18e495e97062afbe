"""ml.train against a plain Keras fit of the same model, seed and order; results, callbacks, data checks."""

import dataclasses
import json
import os
import subprocess
import sys
import tracemalloc

import keras
import numpy as np
import pytest
from numpy_reference import mlp_metrics

import mnistlab as ml
from mnistlab import experiment

TINY = ml.Config(per_class=5, epochs=2, hidden_layers=2)

# A covering set: every optimizer, lambda 0 and > 0, both L2 conventions and layer choices, both
# initialisations, every activation, a partial last batch (15 on 50 images), softmax regression, the CNN.
CASES = {
    "sgd-sigmoid-glorot-plain": dict(optimizer="sgd", hidden_layers=2, activation="sigmoid", l2_lambda=0.0),
    "sgd-tanh-nielsen-l2-partial-batch": dict(optimizer="sgd", hidden_layers=1, activation="tanh", init="nielsen",
                                              l2_lambda=5.0, batch_size=15),
    "momentum-relu-keras-l2": dict(optimizer="momentum", hidden_layers=2, activation="relu", l2_lambda=0.01,
                                   l2_convention="keras", learning_rate=0.05),
    "adam-sigmoid-nielsen-l2-hidden-only": dict(optimizer="adam", hidden_layers=3, activation="sigmoid",
                                                init="nielsen", l2_lambda=5.0, l2_layers="hidden",
                                                learning_rate=0.01),
    "adam-softmax-regression": dict(optimizer="adam", hidden_layers=0, l2_lambda=0.0, learning_rate=0.01),
    "cnn-sgd-l2": dict(model="cnn", optimizer="sgd", l2_lambda=5.0),
}


def test_defaults_are_the_corrected_course_settings():
    config = ml.Config()
    assert (config.optimizer, config.learning_rate, config.batch_size, config.epochs) == ("sgd", 0.1, 10, 30)
    assert (config.l2_lambda, config.l2_convention, config.units, config.activation) == (5.0, "nielsen", 30, "sigmoid")
    assert (config.per_class, config.seed, config.source, config.model) == (100, 0, "bundled", "mlp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


class Snapshots(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def _dense_pairs(model, weights):
    """(kernel, bias) of the hidden and output layers from a full get_weights() list."""
    model.set_weights(weights)
    return [(layer.kernel.numpy(), layer.bias.numpy()) for layer in model.layers
            if layer.name.startswith(("hidden_", "output"))]


def _keras_metrics(model, data, weights) -> dict:
    """The CNN's metrics from Keras' own predict at the given weights (inference mode)."""
    model.set_weights(weights)
    l2_term = float(sum(float(loss) for loss in model.losses))
    values = {"penalty": l2_term}
    for prefix, (x, y) in (("", (data.x_train, data.y_train)), ("val_", (data.x_val, data.y_val)),
                           ("test_", (data.x_test, data.y_test))):
        probabilities = model.predict(x, verbose=0).astype(np.float64)
        error = ml.zero_one_error(probabilities, y)
        cross_entropy = float(-np.mean(np.log(probabilities[np.arange(len(y)), y])))
        values.update({f"{prefix}zero_one_error": error, f"{prefix}cross_entropy": cross_entropy})
        if prefix:
            values.update({f"{prefix}loss": cross_entropy + l2_term, f"{prefix}accuracy": 1.0 - error})
    return values


@pytest.mark.parametrize("name", list(CASES))
def test_train_equals_a_plain_fit_and_independent_metrics(tiny_data, name):
    config = dataclasses.replace(TINY, **CASES[name])
    if config.model == "cnn":
        config = dataclasses.replace(config, epochs=2)
    ours = ml.train(config, tiny_data)
    # The plain fit: same model, seed and row order; one step per call, Keras' own validation.
    ml.set_seed(config.seed)
    model = ml.build_model(config, tiny_data)
    model.compile(optimizer=ml.make_optimizer(config.optimizer, config.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    snapshots = Snapshots()
    plain = model.fit(experiment.shuffled_batches(tiny_data.x_train, tiny_data.y_train, config.batch_size, config.seed),
                      epochs=config.epochs, shuffle=False,
                      steps_per_epoch=experiment.steps_per_epoch(tiny_data.num_train, config.batch_size),
                      validation_data=(tiny_data.x_val.astype(np.float32), ml.one_hot(tiny_data.y_val)),
                      validation_batch_size=len(tiny_data.y_val), verbose=0, callbacks=[snapshots]).history
    assert not ours.diverged
    for key in plain:  # Keras' own keys: the running training loss and accuracy, its validation
        np.testing.assert_allclose(ours.history[key], plain[key], rtol=1e-5, atol=1e-7, err_msg=f"{name}: {key}")
    np.testing.assert_allclose(ours.history["loss"], plain["loss"], rtol=1e-6, err_msg=name)
    for epoch in range(config.epochs + 1):
        if config.model == "mlp":
            weights = _dense_pairs(model, snapshots.weights[epoch])
            previous = _dense_pairs(model, snapshots.weights[epoch - 1]) if epoch else None
            expected = mlp_metrics(model, tiny_data, weights, previous)
        else:
            expected = _keras_metrics(model, tiny_data, snapshots.weights[epoch])
        measured = ours.initial if epoch == 0 else {key: values[epoch - 1] for key, values in ours.history.items()}
        if epoch == 0:
            expected.update(loss=expected["cross_entropy"] + expected["penalty"],
                            accuracy=1.0 - expected["zero_one_error"])
            assert set(measured) == set(expected), name
        else:
            assert set(measured) == set(expected) | {"loss", "accuracy"}, name
        for key, value in expected.items():
            tolerance = 1e-3 if key.startswith("weight_change") else 2e-5
            assert measured[key] == pytest.approx(value, rel=tolerance, abs=1e-7), f"{name}, epoch {epoch}: {key}"
    for split, prefix in (("train", ""), ("val", "val_"), ("test", "test_")):
        assert ours.final[f"{split}_accuracy"] == pytest.approx(1.0 - ours.history[f"{prefix}zero_one_error"][-1])
    assert np.allclose(ours.model.get_weights()[-1], snapshots.weights[-1][-1], rtol=1e-5, atol=1e-7)


def test_result_carries_everything(tiny_data):
    result = ml.train(TINY, tiny_data)
    assert result.config == TINY and not result.diverged and result.seconds > 0
    for key in ("loss", "accuracy", "zero_one_error", "cross_entropy", "val_loss", "val_accuracy",
                "val_zero_one_error", "val_cross_entropy", "test_loss", "test_accuracy", "test_zero_one_error",
                "test_cross_entropy", "penalty", "speed_hidden_2", "weight_change_hidden_2", "norm_change_hidden_2"):
        assert len(result.history[key]) == TINY.epochs, key
    assert "weight_change_hidden_1" not in result.initial and "speed_hidden_1" in result.initial
    assert result.trajectory("speed_hidden_1") == [result.initial["speed_hidden_1"]] + result.history["speed_hidden_1"]
    assert result.trajectory("weight_change_hidden_1")[0] is None
    with pytest.raises(KeyError, match="no history"):
        result.trajectory("speed_hidden_7")
    test_wrong = round(result.history["test_zero_one_error"][-1] * 50)
    assert result.final["test_accuracy"] == (50 - test_wrong) / 50
    assert result.final["val_accuracy"] == pytest.approx(1 - result.history["val_zero_one_error"][-1])
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(payload) == {"config", "initial", "history", "final", "seconds", "diverged"}
    assert payload["config"]["hidden_layers"] == 2


def test_same_seed_bit_identical_history(tiny_data):
    first = ml.train(TINY, tiny_data)
    second = ml.train(TINY, tiny_data)
    other = ml.train(dataclasses.replace(TINY, seed=1), tiny_data)
    assert first.history == second.history and first.initial == second.initial
    assert first.history != other.history


def test_cnn_same_seed_bit_identical(tiny_data):
    config = ml.Config(model="cnn", per_class=5, epochs=1)
    assert ml.train(config, tiny_data).history == ml.train(config, tiny_data).history


def test_row_order_is_numpys_seeded_permutation_per_epoch(tiny_data):
    orders = experiment.epoch_orders(50, 7)
    generator = np.random.default_rng(7)
    for _ in range(3):
        assert np.array_equal(next(orders), generator.permutation(50))
    images = np.arange(50 * 784, dtype=np.float32).reshape(50, 28, 28)
    labels = np.arange(50) % 10
    batches = iter(experiment.shuffled_batches(images, labels, 15, 7))
    generator = np.random.default_rng(7)
    for _ in range(2):
        order = generator.permutation(50)
        for start in range(0, 50, 15):
            x, y = next(batches)
            assert np.array_equal(x.numpy(), images[order[start:start + 15]])
            assert np.array_equal(y.numpy(), ml.one_hot(labels[order[start:start + 15]]))


def test_training_learns(tiny_data):
    result = ml.train(dataclasses.replace(TINY, hidden_layers=1, epochs=5, l2_lambda=0.0), tiny_data)
    assert result.final["train_accuracy"] > 0.5
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_diverged_run_is_reported(tiny_data):
    config = dataclasses.replace(TINY, activation="relu", learning_rate=1e8, epochs=10)
    result = ml.train(config, tiny_data)
    assert result.diverged and len(result.history["loss"]) < 10 and result.history["loss"][-1] is None
    json.dumps(result.to_dict(), allow_nan=False)  # NaN and infinity become null
    summary = ml.diagnostics.summarise_run(result)
    assert summary["status"] == "diverged" and summary["epochs_run"] == len(result.history["loss"])


def test_zero_epochs_give_the_initial_values(tiny_data):
    result = ml.train(dataclasses.replace(TINY, epochs=0), tiny_data)
    assert result.history == {} and not result.diverged
    assert result.final["test_accuracy"] == pytest.approx(1 - result.initial["test_zero_one_error"])
    assert result.final["speed_hidden_1"] == result.initial["speed_hidden_1"]
    summary = ml.diagnostics.summarise_run(result)
    assert summary["status"] == "empty" and summary["best_epoch"] is None
    assert summary["val_accuracy"] == round(result.final["val_accuracy"], 4)


def test_batch_larger_than_the_training_set_trains(tiny_data):
    result = ml.train(dataclasses.replace(TINY, batch_size=1000, epochs=2), tiny_data)
    assert len(result.history["loss"]) == 2 and not result.diverged


def test_memory_does_not_grow_with_epochs(tiny_data):
    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    tracemalloc.start()
    try:
        result = ml.train(dataclasses.replace(TINY, epochs=100_000_000), tiny_data, callbacks=[StopAfterFirst()])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result.history["loss"]) == 1
    assert peak < 100e6  # every epoch's order up front would be 20 GB


def test_callbacks_behave_as_in_keras(tiny_data):
    """A user's keys reach the history; a user sees every metric; stop_training works."""
    seen = {}

    class Doubler(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = dict(logs)
            logs["double_test_error"] = 2 * logs["test_zero_one_error"]
            if epoch == 1:
                self.model.stop_training = True

    result = ml.train(dataclasses.replace(TINY, epochs=4), tiny_data, callbacks=[Doubler()])
    assert len(result.history["loss"]) == 2 and not result.diverged
    assert result.history["double_test_error"] == [2 * e for e in result.history["test_zero_one_error"]]
    assert set(seen[0]) == set(result.history) - {"double_test_error"}


def test_batch_hooks_run_as_keras_runs_them(tiny_data):
    """Under steps_per_execution Keras calls the batch hooks once per execution: here once per epoch."""

    class Hooks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.calls = []

        def on_train_batch_begin(self, batch, logs=None):
            self.calls.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            self.calls.append(("end", batch, sorted(logs)))

    config = dataclasses.replace(TINY, epochs=3, batch_size=15)
    ours = Hooks()
    ml.train(config, tiny_data, callbacks=[ours])
    ml.set_seed(config.seed)
    model = ml.build_model(config, tiny_data)  # compiled as ml.train compiles it
    keras_own = Hooks()
    model.fit(experiment.shuffled_batches(tiny_data.x_train, tiny_data.y_train, config.batch_size, config.seed),
              epochs=config.epochs, steps_per_epoch=experiment.steps_per_epoch(tiny_data.num_train, config.batch_size),
              shuffle=False, verbose=0, callbacks=[keras_own])
    assert ours.calls == keras_own.calls
    assert [call[0] for call in ours.calls] == ["begin", "end"] * config.epochs
    assert ours.calls[1][2] == ["accuracy", "loss"]


def test_verbose_fit_prints_the_metrics(tiny_data, capsys):
    ml.train(dataclasses.replace(TINY, epochs=1), tiny_data, verbose=2)
    assert "test_zero_one_error" in capsys.readouterr().out


def _bad(data, **changes):
    return dataclasses.replace(data, **changes)


@pytest.mark.parametrize("change, message", [
    (lambda d: dict(x_train=d.x_train.astype(np.float32) * np.where(np.arange(784).reshape(28, 28) == 5, np.nan, 1)),
     "data.x_train has NaN or infinite pixels"),
    (lambda d: dict(x_test=np.where(np.arange(784).reshape(28, 28) == 5, np.inf, d.x_test.astype(np.float64))),
     "data.x_test has NaN or infinite pixels"),
    (lambda d: dict(x_val=d.x_val.reshape(len(d.x_val), -1)), r"data.x_val must have shape \(N, 28, 28\)"),
    (lambda d: dict(y_train=d.y_train[:-1]), "data.x_train has 50 images but data.y_train has 49 labels"),
    (lambda d: dict(y_val=d.y_val.astype(np.float64)), "data.y_val must hold integer labels"),
    (lambda d: dict(y_test=d.y_test + 1), r"data.y_test must lie in 0..9, got 1..10"),
    (lambda d: dict(x_test=d.x_test[:0], y_test=d.y_test[:0]), "data.x_test is empty"),
    (lambda d: dict(x_train=d.x_train.astype(str)), "data.x_train must hold numeric pixels"),
])
def test_bad_data_is_one_value_error(tiny_data, change, message):
    with pytest.raises(ValueError, match=message):
        ml.train(TINY, _bad(tiny_data, **change(tiny_data)))


def test_float_pixels_train_like_the_same_uint8_pixels(tiny_data):
    floats = _bad(tiny_data, x_train=tiny_data.x_train.astype(np.float64))
    assert ml.train(TINY, floats).history == ml.train(TINY, tiny_data).history


def test_study_runs_the_six_configurations(tiny_data):
    results = ml.study(dataclasses.replace(TINY, epochs=1), tiny_data)
    assert [(r.config.hidden_layers, r.config.l2_lambda) for r in results] == ml.STUDY_GRID
    assert len(ml.STUDY_GRID) == 6


def test_runs_in_threads_equal_runs_one_by_one(tiny_data):
    """Each run is seeded by its config alone, so concurrent runs cannot disturb each other."""
    import concurrent.futures

    configs = [dataclasses.replace(TINY, hidden_layers=h, l2_lambda=lam) for h, lam in ((1, 0.0), (2, 5.0))]
    configs.append(ml.Config(model="cnn", per_class=5, epochs=1))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(lambda config: ml.train(config, tiny_data), configs))
    alone = [ml.train(config, tiny_data) for config in configs]
    assert [r.history for r in threaded] == [r.history for r in alone]
    assert [r.initial for r in threaded] == [r.initial for r in alone]


def test_train_grid_rows(tiny_data):
    base = ml.Config(epochs=1, per_class=5)
    rows = ml.train_grid(base, {"hidden_layers": [1], "l2_lambda": [0.0, 5.0]}, [0, 1], tiny_data)
    assert [(row["hidden_layers"], row["l2_lambda"], row["seed"]) for row in rows] == [
        (1, 0.0, 0), (1, 0.0, 1), (1, 5.0, 0), (1, 5.0, 1)]
    alone = ml.train(ml.Config(epochs=1, per_class=5, l2_lambda=5.0, seed=1), tiny_data)
    assert rows[3]["val_accuracy"] == alone.final["val_accuracy"]
    assert rows[3]["test_accuracy"] == alone.final["test_accuracy"]
    assert all(row["status"] == "ok" and row["error"] == "" and row["seconds"] > 0 for row in rows)
    with pytest.raises(ValueError, match="unknown Config field"):
        ml.train_grid(base, {"depth": [1]}, [0], tiny_data)


def test_no_xla_and_one_execution_per_epoch(tiny_data):
    model = ml.build_model(TINY, tiny_data)
    assert model.steps_per_execution == experiment.steps_per_epoch(tiny_data.num_train, TINY.batch_size) == 5
    assert model.jit_compile is False


def test_import_reads_no_data_and_needs_no_pyplot():
    # Keras itself imports matplotlib.pyplot when it can; blocked here, mnistlab must still import.
    code = ("import sys; sys.modules['matplotlib.pyplot'] = None\n"
            "import mnistlab as ml\n"
            "ml.Config()\n"
            "assert 'mnistlab.plots' not in sys.modules\n"
            "assert ml.data._load_packaged.cache_info().currsize == 0\n"
            "print('ok')")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr[-2000:]


@pytest.mark.parametrize("given, expected", [(None, "1"), ("2", "2")])
def test_import_sets_one_thread_per_op_unless_the_user_chose(given, expected):
    environment = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    if given is not None:
        environment["TF_NUM_INTRAOP_THREADS"] = given
    code = "import os, mnistlab; print(os.environ['TF_NUM_INTRAOP_THREADS'])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == expected


def _state(model) -> list:
    """Every variable of the model (weights, seed states) and of its optimizer (step, slots), as arrays."""
    return [variable.numpy() for variable in model.variables + model.optimizer.variables]


@pytest.mark.parametrize("changes", [
    dict(hidden_layers=2, l2_lambda=5.0),
    dict(hidden_layers=1, optimizer="adam", learning_rate=0.01, init="nielsen", batch_size=15),
    dict(model="cnn", optimizer="momentum", learning_rate=0.01, l2_lambda=1.0),
], ids=["sgd-l2", "adam-partial-batch", "cnn-momentum"])
def test_training_a_model_again_equals_a_fresh_run(tiny_data, changes):
    base = dataclasses.replace(TINY, **changes)
    first = ml.train(base, tiny_data)
    again = ml.train(dataclasses.replace(base, seed=1, epochs=3), tiny_data, model=first.model)
    fresh = ml.train(dataclasses.replace(base, seed=1, epochs=3), tiny_data)
    assert again.model is first.model and fresh.model is not first.model
    assert again.history == fresh.history and again.initial == fresh.initial and again.final == fresh.final
    assert again.diverged == fresh.diverged
    for reused, built in zip(_state(again.model), _state(fresh.model), strict=True):
        assert np.array_equal(reused, built)
    back = ml.train(base, tiny_data, model=first.model)  # and back to the first seed
    assert back.history == first.history and back.initial == first.initial


def test_training_again_after_divergence_starts_afresh(tiny_data):
    config = dataclasses.replace(TINY, activation="relu", learning_rate=1e8, epochs=4)
    diverged = ml.train(config, tiny_data)
    assert diverged.diverged
    healthy = dataclasses.replace(config, learning_rate=0.1)
    with pytest.raises(ValueError, match="another learning_rate"):
        ml.train(healthy, tiny_data, model=diverged.model)
    again = ml.train(dataclasses.replace(config, seed=3), tiny_data, model=diverged.model)
    assert again.history == ml.train(dataclasses.replace(config, seed=3), tiny_data).history


@pytest.mark.parametrize("change, message", [
    (dict(hidden_layers=3), "another hidden_layers; only seed and epochs may differ"),
    (dict(l2_lambda=1.0, batch_size=5), "another l2_lambda, batch_size"),
])
def test_training_again_refuses_another_config(tiny_data, change, message):
    first = ml.train(TINY, tiny_data)
    with pytest.raises(ValueError, match=message):
        ml.train(dataclasses.replace(TINY, **change), tiny_data, model=first.model)


def test_training_again_refuses_other_data_and_foreign_models(tiny_data):
    first = ml.train(TINY, tiny_data)
    other = dataclasses.replace(tiny_data, x_test=tiny_data.x_test[::-1].copy())
    with pytest.raises(ValueError, match="trained on other data"):
        ml.train(TINY, other, model=first.model)
    equal_copy = dataclasses.replace(tiny_data, x_train=tiny_data.x_train.copy())
    assert ml.train(TINY, equal_copy, model=first.model).history == first.history
    with pytest.raises(ValueError, match="earlier ml.train"):
        ml.train(TINY, tiny_data, model=ml.build_model(TINY, tiny_data))


def test_train_grid_builds_one_model_per_combination(tiny_data, monkeypatch):
    built = []
    original = experiment.build_model
    monkeypatch.setattr(experiment, "build_model", lambda config, data: built.append(config) or original(config, data))
    base = ml.Config(epochs=1, per_class=5)
    rows = ml.train_grid(base, {"l2_lambda": [0.0, 5.0]}, [0, 1, 2], tiny_data)
    assert [(config.l2_lambda, config.seed) for config in built] == [(0.0, 0), (5.0, 0)]
    for row in rows:
        alone = ml.train(dataclasses.replace(base, l2_lambda=row["l2_lambda"], seed=row["seed"]), tiny_data)
        assert (row["val_accuracy"], row["test_accuracy"], row["train_accuracy"]) == tuple(
            alone.final[key] for key in ("val_accuracy", "test_accuracy", "train_accuracy"))
