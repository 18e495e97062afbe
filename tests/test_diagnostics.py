"""Diagnostics: NumPy backprop against TensorFlow and finite differences, decay factors, step records."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mnistlab as ml
from mnistlab import diagnostics as dg
from numpy_reference import ACTIVATIONS, softmax


@pytest.fixture(scope="module")
def tiny():
    return ml.load_course_data(per_class=3)


def _cost(weights, biases, x, y, output):
    a = x
    for k, (w, b) in enumerate(zip(weights, biases)):
        z = a @ w + b
        if k < len(weights) - 1 or output == "sigmoid":
            a = 1 / (1 + np.exp(-z))
        else:
            a = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    if output == "softmax":
        return -np.mean(np.sum(y * np.log(a), axis=1))
    return -np.mean(np.sum(y * np.log(a) + (1 - y) * np.log(1 - a), axis=1))


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_bias_gradients_match_finite_differences(output):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 5))
    y = np.eye(4)[rng.integers(0, 4, size=7)]
    weights, biases = dg.nielsen_parameters([5, 3, 3, 4], seed=1)
    gradients = dg.bias_gradients(weights, biases, x, y, output)
    assert [g.shape for g in gradients] == [(3,), (3,), (4,)]
    step = 1e-6
    for layer, gradient in enumerate(gradients):
        for unit in range(len(gradient)):
            plus = [b.copy() for b in biases]
            minus = [b.copy() for b in biases]
            plus[layer][unit] += step
            minus[layer][unit] -= step
            numeric = (_cost(weights, plus, x, y, output) - _cost(weights, minus, x, y, output)) / (2 * step)
            assert gradient[unit] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_nielsen_parameters_have_his_spread():
    weights, biases = dg.nielsen_parameters([400, 200, 10], seed=0)
    assert [w.shape for w in weights] == [(400, 200), (200, 10)]
    assert np.std(weights[0]) == pytest.approx(1 / np.sqrt(400), rel=0.02)
    assert np.std(weights[1]) == pytest.approx(1 / np.sqrt(200), rel=0.1)
    assert np.std(biases[0]) == pytest.approx(1.0, rel=0.15)
    again, _ = dg.nielsen_parameters([400, 200, 10], seed=0)
    other, _ = dg.nielsen_parameters([400, 200, 10], seed=1)
    assert np.array_equal(weights[0], again[0]) and not np.array_equal(weights[0], other[0])
    with pytest.raises(ValueError, match="layer_sizes"):
        dg.nielsen_parameters([784])


def test_softmax_speeds_agree_with_epoch_metrics(tiny):
    # EpochMetrics differentiates the Keras model with TensorFlow; the NumPy backprop must agree.
    ml.set_seed(0)
    model = ml.build_mlp(tiny.x_train, hidden_layers=2, units=6, init="nielsen", seed=4)
    callback = ml.EpochMetrics((tiny.x_train, tiny.y_train))
    callback.set_model(model)
    callback.on_train_begin()
    hidden = ml.hidden_layers_of(model) + [model.get_layer("output")]
    weights = [layer.kernel.numpy().astype(np.float64) for layer in hidden]
    biases = [layer.bias.numpy().astype(np.float64) for layer in hidden]
    x = dg.prepare_inputs(tiny.x_train)
    gradients = dg.bias_gradients(weights, biases, x, ml.one_hot(tiny.y_train), "softmax")
    for k in (1, 2):
        assert np.linalg.norm(gradients[k - 1]) == pytest.approx(callback.initial[f"speed_hidden_{k}"], rel=1e-3)


def test_prepare_inputs_scalings(tiny):
    unit = dg.prepare_inputs(tiny.x_train, scaling="unit")
    assert unit.shape == (30, 784) and unit.min() >= 0 and unit.max() <= 1
    standard = dg.prepare_inputs(tiny.x_train)
    varying = tiny.x_train.reshape(30, -1).std(axis=0) > 0
    assert np.allclose(standard[:, varying].mean(axis=0), 0, atol=1e-6)  # float32 statistics
    assert np.allclose(standard[:, varying].std(axis=0), 1, atol=1e-6)
    with pytest.raises(ValueError, match="scaling"):
        dg.prepare_inputs(tiny.x_train, scaling="minmax")


def test_speeds_at_initialisation_shape_and_vanishing():
    rng = np.random.default_rng(0)
    x = rng.random((200, 784))
    y = np.eye(10)[rng.integers(0, 10, size=200)]
    speeds = dg.speeds_at_initialisation(3, x, y, seeds=(0, 1, 2), output="sigmoid")
    assert speeds.shape == (3, 3)
    # Sigmoid layers shrink the error on the way back: the first layer learns slowest.
    assert np.all(speeds.mean(axis=0)[0] < speeds.mean(axis=0)[-1])
    with pytest.raises(ValueError, match="output"):
        dg.speeds_at_initialisation(2, x, y, output="tanh")


def test_weight_decay_factor():
    assert dg.weight_decay_factor(0.1, 5, 1000) == pytest.approx(1 - 0.1 * 5 / 1000)
    assert dg.weight_decay_factor(0.1, 5, 1000, "keras") == pytest.approx(0.0, abs=1e-12)
    assert dg.weight_decay_factor(0.5, 5, 1000, "keras") == pytest.approx(-4.0)
    assert dg.weight_decay_factor(0.1, 0, 1000, "keras") == 1.0
    with pytest.raises(ValueError, match="learning_rate"):
        dg.weight_decay_factor(0.0, 5, 1000)


def test_sgd_step_obeys_the_decay_factor(tiny):
    # One plain SGD step: w_new = factor * w - eta * dC0/dw, with the factor above.
    config = ml.Config(hidden_layers=1, units=4, l2_lambda=0.3, l2_convention="keras", learning_rate=0.05,
                       per_class=3)
    ml.set_seed(0)
    model = ml.build_model(config, tiny)
    kernel = model.get_layer("hidden_1").kernel
    before = kernel.numpy().astype(np.float64)
    x, y = tiny.x_train[:10], tiny.y_train[:10]
    with tf.GradientTape() as tape:
        cross_entropy = tf.reduce_mean(keras.losses.categorical_crossentropy(ml.one_hot(y), model(x)))
    data_gradient = tape.gradient(cross_entropy, kernel.value).numpy()
    dg.first_steps(model, x, y, num_steps=1, batch_size=10)
    factor = dg.weight_decay_factor(0.05, 0.3, tiny.num_train, "keras")
    assert np.allclose(kernel.numpy(), factor * before - 0.05 * data_gradient, atol=1e-5)


def test_loss_parts_and_gradient_norms(tiny):
    config = ml.Config(hidden_layers=1, units=4, l2_lambda=5, l2_convention="keras", per_class=3)
    ml.set_seed(0)
    model = ml.build_model(config, tiny)
    parts = dg.loss_parts(model, tiny.x_train, tiny.y_train)
    kernels = [model.get_layer(n).kernel.numpy().astype(np.float64) for n in ("hidden_1", "output")]
    assert parts["penalty"] == pytest.approx(5 * sum(np.sum(k ** 2) for k in kernels), rel=1e-5)
    probabilities = model.predict_on_batch(tiny.x_train).astype(np.float64)
    expected = -np.mean(np.log(probabilities[np.arange(30), tiny.y_train]))
    assert parts["cross_entropy"] == pytest.approx(expected, rel=1e-4)
    norms = dg.gradient_norms(model, tiny.x_train, tiny.y_train)
    assert set(norms) == {"hidden_1", "output"}
    for name, kernel in zip(("hidden_1", "output"), kernels):
        # d/dW of 5 * sum W^2 is 10 W.
        assert norms[name]["penalty"] == pytest.approx(10 * np.linalg.norm(kernel), rel=1e-5)
        assert norms[name]["weight"] == pytest.approx(np.linalg.norm(kernel), rel=1e-5)
        assert norms[name]["data"] > 0
    plain = ml.build_model(ml.Config(hidden_layers=1, units=4, l2_lambda=0, per_class=3), tiny)
    assert dg.loss_parts(plain, tiny.x_train, tiny.y_train)["penalty"] == 0.0
    assert all(v["penalty"] == 0.0 for v in dg.gradient_norms(plain, tiny.x_train, tiny.y_train).values())


def test_first_steps_records_adam_steps_of_about_the_learning_rate(tiny):
    config = ml.Config(hidden_layers=1, units=4, l2_lambda=0, optimizer="adam", learning_rate=0.01, per_class=3)
    ml.set_seed(0)
    model = ml.build_model(config, tiny)
    record = dg.first_steps(model, tiny.x_train, tiny.y_train, num_steps=3, batch_size=10)
    assert set(record) == {"loss", "step", "weight", "initial_weight"}
    assert all(len(record[key]) == 3 for key in ("loss", "step", "weight"))
    # Adam's first step moves every weight with a non-zero gradient by about lr.
    assert 0.3 * 0.01 < record["step"][0] <= 0.0101
    with pytest.raises(ValueError, match="num_steps"):
        dg.first_steps(model, tiny.x_train, tiny.y_train, num_steps=0)


def test_published_values_are_per_layer():
    assert {k: len(v) for k, v in dg.NIELSEN_PUBLISHED_SPEEDS.items()} == {2: 2, 3: 3, 4: 4}


def test_squared_weights_sums_kernels_only(tiny):
    model = ml.build_mlp(tiny.x_train, hidden_layers=2, units=3)
    kernels = [layer.kernel.numpy().astype(np.float64) for layer in model.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 3
    assert dg.squared_weights(model) == pytest.approx(sum(np.sum(k ** 2) for k in kernels), rel=1e-6)


def test_summarise_chooses_on_validation_and_reports_test(tiny):
    result = ml.train(ml.Config(hidden_layers=1, units=4, epochs=3, per_class=3, l2_lambda=5), tiny)
    result.history["val_zero_one_error"] = [0.5, 0.2, 0.4]
    result.history["test_zero_one_error"] = [0.6, 0.3, 0.1]
    result.history["val_loss"] = [2.0, 1.5, 1.7]
    result.final.update(train_accuracy=0.9, val_accuracy=0.6, test_accuracy=0.7, val_loss=1.7)
    values = dg.summarise_run(result)
    assert values["status"] == "ok" and values["epochs_run"] == 3
    assert values["gap"] == pytest.approx(0.3)
    assert values["best_val_accuracy"] == pytest.approx(0.8) and values["best_epoch"] == 2
    assert values["test_accuracy_at_best_epoch"] == pytest.approx(0.7) and values["test_accuracy"] == 0.7
    assert values["min_val_loss"] == 1.5 and values["min_val_loss_epoch"] == 2 and values["final_val_loss"] == 1.7
    assert values["squared_weights"] == pytest.approx(dg.squared_weights(result.model), abs=1e-4)
    coefficient = ml.l2_coefficient(5, tiny.num_train)
    assert values["penalty"] == pytest.approx(coefficient * dg.squared_weights(result.model), abs=1e-4)
    assert values["val_cross_entropy"] == round(result.history["val_cross_entropy"][-1], 4)
    assert all(round(v, 4) == v for v in values.values() if isinstance(v, float))


def test_summarise_a_diverged_run_without_finite_epochs(tiny):
    result = ml.train(ml.Config(hidden_layers=1, units=4, epochs=2, per_class=3), tiny)
    for key in ("val_zero_one_error", "val_loss", "test_zero_one_error"):
        result.history[key] = [None, None]
    result.diverged = True
    values = dg.summarise_run(result)
    assert values["status"] == "diverged"
    assert values["best_epoch"] is None and values["best_val_accuracy"] is None and values["min_val_loss"] is None


def test_standardise_with_reference_statistics(tiny):
    rows = dg.standardise(tiny.x_val, tiny.x_train)
    mean, variance = ml.standardisation_stats(tiny.x_train)
    by_hand = (tiny.x_val.reshape(len(tiny.x_val), -1) - mean.astype(np.float64)) / np.sqrt(variance.astype(np.float64))
    assert rows.shape == (len(tiny.x_val), 784) and np.abs(rows - by_hand).max() < 1e-12
    own = dg.standardise(tiny.x_val)
    varying = tiny.x_val.reshape(len(tiny.x_val), -1).std(axis=0) > 0
    assert np.allclose(own[:, varying].mean(axis=0), 0, atol=1e-6)


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_predict_with_statistics(tiny, model_name):
    ml.set_seed(0)
    model = ml.build_model(ml.Config(model=model_name, hidden_layers=1, per_class=3), tiny)
    # With the training statistics: the model's own predictions.
    with_train = dg.predict_with_statistics(model, tiny.x_test, tiny.x_train)
    assert np.abs(with_train - model.predict(tiny.x_test, verbose=0)).max() < 1e-5
    # With the test set's own statistics (the original's refit): what a model standardised on them predicts.
    refit = dg.predict_with_statistics(model, tiny.x_test)
    if model_name == "mlp":
        rebuilt = ml.build_mlp(tiny.x_test, hidden_layers=1)
    else:
        rebuilt = ml.build_cnn(tiny.x_test)
    rebuilt.set_weights(model.get_weights())
    assert np.abs(refit - rebuilt.predict(tiny.x_test, verbose=0)).max() < 1e-5
    assert not np.allclose(refit, with_train)
    with pytest.raises(ValueError, match="standardise"):
        dg.predict_with_statistics(keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten()]), tiny.x_test)


def test_best_epoch_counts_from_one_keeps_the_first_tie_and_skips_missing_values():
    history = {"val_cross_entropy": [0.9, 0.5, None, 0.5, 0.7], "val_accuracy": [0.1, 0.8, 0.8, 0.2, None]}
    assert dg.best_epoch(history, "val_cross_entropy") == 2
    assert dg.best_epoch(history, "val_accuracy", mode="max") == 2
    assert dg.best_epoch({"val_loss": [None, None]}, "val_loss") is None
    assert dg.best_epoch({}, "val_loss") is None
    with pytest.raises(ValueError, match="mode"):
        dg.best_epoch(history, "val_accuracy", mode="highest")


def test_compare_seeds_judges_whole_ranges():
    assert dg.compare_seeds([0.85, 0.86], [0.80, 0.84]) == "higher"
    assert dg.compare_seeds([0.70, 0.75], [0.80, 0.84]) == "lower"
    assert dg.compare_seeds([0.81, 0.90], [0.80, 0.84]) == "overlapping"
    assert dg.compare_seeds([0.84], [0.84]) == "overlapping"  # equal is not higher
    with pytest.raises(ValueError):
        dg.compare_seeds([], [0.8])
    with pytest.raises(ValueError):
        dg.compare_seeds([float("nan")], [0.8])


def test_layer_statistics_match_a_numpy_forward_pass(tiny):
    model = ml.build_mlp(tiny.x_train, hidden_layers=2, units=4, seed=3)
    statistics = dg.layer_statistics(model, tiny.x_val)
    assert list(statistics) == ["hidden_1", "hidden_2", "output"]
    activations = dg.standardise(tiny.x_val, tiny.x_train)
    for name in ("hidden_1", "hidden_2", "output"):
        layer = model.get_layer(name)
        kernel, bias = layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
        z = activations @ kernel + bias
        activations = softmax(z) if name == "output" else ACTIVATIONS["sigmoid"](z)
        assert statistics[name]["weight_rms"] == pytest.approx(np.sqrt(np.mean(kernel ** 2)), rel=1e-6)
        assert statistics[name]["activation_spread"] == pytest.approx(activations.std(axis=0).mean(), rel=1e-4, abs=1e-7)


def test_layer_statistics_see_a_constant_layer_and_refuse_bad_input(tiny):
    model = ml.build_mlp(tiny.x_train, hidden_layers=1, units=4, seed=0)
    model.get_layer("hidden_1").kernel.assign(np.zeros((784, 4), dtype="float32"))
    statistics = dg.layer_statistics(model, tiny.x_val)
    assert statistics["hidden_1"]["weight_rms"] == 0.0
    assert statistics["hidden_1"]["activation_spread"] == 0.0 and statistics["output"]["activation_spread"] == 0.0
    with pytest.raises(ValueError, match="two images"):
        dg.layer_statistics(model, tiny.x_val[:1])
