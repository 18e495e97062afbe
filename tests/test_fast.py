"""The fast engine against the plain Keras `fit`, an independent NumPy computation, and itself."""

import dataclasses
import math

import keras
import numpy as np
import pytest
from numpy_reference import numpy_mlp_gradients

import mnistlab as ml
from mnistlab import bench

# batch_size 15 on 50 images leaves a partial last batch, which both engines must handle.
TINY = ml.Config(per_class=5, epochs=2, hidden_layers=2, batch_size=15)


def test_engines_agree(tiny_data):
    fast = ml.train(TINY, tiny_data, engine="fast")
    plain = ml.train(TINY, tiny_data, engine="keras")
    assert {k: len(v) for k, v in fast.history.items()} == {k: len(v) for k, v in plain.history.items()}
    assert len(fast.history["speed_hidden_2"]) == TINY.epochs + 1
    assert fast.history["loss"][0] == pytest.approx(plain.history["loss"][0], rel=1e-6)
    for key in fast.history:
        tolerance = 1e-3 if key.startswith("weight_change") else 1e-5  # |dW/W| divides by tiny weights
        np.testing.assert_allclose(fast.history[key], plain.history[key], rtol=tolerance, atol=1e-6, err_msg=key)
    assert set(fast.final) == set(plain.final) and fast.diverged is plain.diverged is False


def test_fast_metrics_match_numpy(tiny_data):
    """Every logged metric recomputed in NumPy from the weights a callback saw at each epoch end."""
    config = dataclasses.replace(TINY, l2_lambda=5.0)
    seen = []

    class Snapshots(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self._kernels())

        def _kernels(self):
            return [layer.kernel.numpy().copy() for layer in ml.hidden_layers_of(self.model)]

        def on_epoch_end(self, epoch, logs=None):
            seen.append(self._kernels())
            logs_seen.append(dict(logs))

    logs_seen = []
    result = ml.train(config, tiny_data, callbacks=[Snapshots()])
    model = result.model
    assert len(logs_seen) == config.epochs and set(logs_seen[-1]) == set(result.history)
    loss, _, bias_grads = numpy_mlp_gradients(model, tiny_data.x_train, tiny_data.y_train)
    for k in (1, 2):
        assert result.history[f"speed_hidden_{k}"][-1] == pytest.approx(np.linalg.norm(bias_grads[k - 1]), rel=1e-4)
        old, new = seen[-2][k - 1], seen[-1][k - 1]
        moved = old != 0
        change = np.mean(np.abs(new[moved] - old[moved]) / np.abs(old[moved]))
        assert result.history[f"weight_change_hidden_{k}"][-1] == pytest.approx(change, rel=1e-4)
    probabilities = model.predict(tiny_data.x_val, verbose=0)
    wrong = np.mean(np.argmax(probabilities, axis=1) != tiny_data.y_val)
    assert result.history["val_zero_one_error"][-1] == pytest.approx(wrong)
    assert result.final["test_accuracy"] == pytest.approx(1 - wrong)
    coefficient = ml.l2_coefficient(config.l2_lambda, tiny_data.num_train)
    penalty = coefficient * sum(np.sum(layer.kernel.numpy().astype(np.float64) ** 2)
                                for layer in model.layers if layer.name.startswith(("hidden_", "output")))
    cross_entropy = -np.mean(np.log(probabilities[np.arange(len(probabilities)), tiny_data.y_val]))
    assert result.history["val_loss"][-1] == pytest.approx(cross_entropy + penalty, rel=1e-4)
    train_wrong = np.mean(np.argmax(model.predict(tiny_data.x_train, verbose=0), axis=1) != tiny_data.y_train)
    assert result.history["zero_one_error"][-1] == pytest.approx(train_wrong)
    assert loss > 0


def test_fast_is_deterministic_and_runs_do_not_leak(tiny_data):
    """Same config and seed: bit-identical, even after another model of the same shape used the compiled code."""
    first = ml.train(TINY, tiny_data).history
    ml.train(dataclasses.replace(TINY, l2_lambda=0.0, learning_rate=0.5, seed=3), tiny_data)
    again = ml.train(TINY, tiny_data).history
    other_seed = ml.train(dataclasses.replace(TINY, seed=1), tiny_data).history
    assert first == again
    assert first != other_seed


def test_fast_divergence_stops_and_says_so(tiny_data):
    config = dataclasses.replace(TINY, activation="relu", hidden_layers=1, learning_rate=1e8, epochs=10)
    result = ml.train(config, tiny_data)
    assert result.diverged
    epochs_run = len(result.history["loss"])
    assert epochs_run < config.epochs and result.history["loss"][-1] is None  # NaN/inf reported as null
    assert len(result.history["speed_hidden_1"]) == epochs_run + 1


def test_callback_can_stop_the_fast_engine(tiny_data):
    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    result = ml.train(dataclasses.replace(TINY, epochs=3), tiny_data, callbacks=[StopAfterFirst()])
    assert len(result.history["loss"]) == 1 and not result.diverged


def test_fast_trained_model_saves_and_reopens(tiny_data, tmp_path):
    result = ml.train(dataclasses.replace(TINY, epochs=1), tiny_data)
    path = tmp_path / "model.keras"
    result.model.save(path)
    reopened = keras.models.load_model(path)
    probabilities = reopened.predict(tiny_data.x_val, verbose=0)
    assert probabilities.shape == (len(tiny_data.x_val), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, result.model.predict(tiny_data.x_val, verbose=0), rtol=1e-5)
    assert math.isclose(np.mean(np.argmax(probabilities, axis=1) == tiny_data.y_val), result.final["test_accuracy"])


def test_cnn_fast_engine_matches_plain_fit(tiny_data):
    config = ml.Config(model="cnn", per_class=5, epochs=1)
    fast = ml.train(config, tiny_data)
    plain = ml.train(config, tiny_data, engine="keras")
    assert fast.history.keys() == plain.history.keys()
    np.testing.assert_allclose(fast.history["loss"], plain.history["loss"], rtol=1e-5)


def test_unknown_engine_is_refused(tiny_data):
    with pytest.raises(ValueError, match="fast, keras"):
        ml.train(TINY, tiny_data, engine="turbo")


def test_bench_help_works(capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])
    assert stopped.value.code == 0
    assert "--skip-original" in capsys.readouterr().out


def test_train_many_in_threads_equals_one_by_one(tiny_data):
    configs = [dataclasses.replace(TINY, hidden_layers=h, l2_lambda=lam) for h, lam in ((1, 0.0), (2, 5.0), (1, 5.0))]
    threaded = ml.train_many(configs, tiny_data, workers=2)
    alone = [ml.train(config, tiny_data) for config in configs]
    assert [r.config for r in threaded] == configs
    assert [r.history for r in threaded] == [r.history for r in alone]
    with pytest.raises(ValueError, match="workers"):
        ml.train_many(configs, tiny_data, workers=0)


def test_compiled_program_is_not_reused_across_training_sets():
    """The standardisation constants are baked into the compiled graph: another data set needs its own."""
    from mnistlab import fast

    small = ml.Config(hidden_layers=1, l2_lambda=0.0, epochs=1, per_class=5)
    larger = dataclasses.replace(small, per_class=20)
    fast.clear_compiled()
    reference = ml.train(small)
    fast.clear_compiled()
    ml.train(larger)
    again = ml.train(small)
    assert again.history == reference.history
