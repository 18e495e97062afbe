import dataclasses

import keras
import numpy as np
import pytest

import mnistlab as ml
from numpy_reference import numpy_mlp_gradients


@pytest.mark.parametrize("hidden_layers, expected", [(0, 7850), (1, 23860), (2, 24790), (3, 25720)])
def test_mlp_parameter_counts(tiny_data, hidden_layers, expected):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=hidden_layers)
    assert ml.count_trainable(model) == expected
    assert [layer.name for layer in ml.hidden_layers_of(model)] == [f"hidden_{k}" for k in range(1, hidden_layers + 1)]


def test_cnn_has_the_original_parameter_count(tiny_data):
    assert ml.count_trainable(ml.build_cnn(tiny_data.x_train)) == 619_786


def test_models_map_raw_pixels_to_probabilities(tiny_data):
    for model in (ml.build_mlp(tiny_data.x_train, 2), ml.build_cnn(tiny_data.x_train)):
        probabilities = model.predict_on_batch(tiny_data.x_test)
        assert probabilities.shape == (len(tiny_data.x_test), 10)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_nielsen_initialisation_statistics(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, units=200, init="nielsen", seed=3)
    layer = model.get_layer("hidden_1")
    assert abs(layer.kernel.numpy().std() - 1 / np.sqrt(784)) < 0.002
    assert abs(layer.bias.numpy().std() - 1.0) < 0.15
    glorot = ml.build_mlp(tiny_data.x_train, hidden_layers=1, units=200).get_layer("hidden_1")
    assert np.all(glorot.bias.numpy() == 0)


def test_same_seed_same_weights(tiny_data):
    first = ml.build_mlp(tiny_data.x_train, 2, seed=7).get_weights()
    second = ml.build_mlp(tiny_data.x_train, 2, seed=7).get_weights()
    other = ml.build_mlp(tiny_data.x_train, 2, seed=8).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_l2_conventions():
    assert ml.l2_coefficient(5, 1000, "nielsen") == pytest.approx(0.0025)
    assert ml.l2_coefficient(5, 1000, "keras") == 5.0
    with pytest.raises(ValueError, match="nielsen, keras"):
        ml.l2_coefficient(5, 1000, "bishop")
    with pytest.raises(ValueError):
        ml.l2_coefficient(-1, 1000)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ValueError, match="sgd, momentum, adam"):
        ml.make_optimizer("rmsprop", 0.1)


def test_one_sgd_step_is_nielsen_weight_decay(tiny_data):
    """w <- (1 - eta lambda / n) w - eta dC0/dw for one mini-batch, with Keras l2(lambda / (2n))."""
    eta, lam, n = 0.1, 5.0, 1000
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=2, l2=ml.l2_coefficient(lam, n), seed=1)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=eta), loss="categorical_crossentropy")
    batch_x, batch_y = tiny_data.x_train[::5], tiny_data.y_train[::5]
    layers = [layer for layer in model.layers if layer.name.startswith(("hidden_", "output"))]
    before = [(layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)) for layer in layers]
    _, kernel_grads, bias_grads = numpy_mlp_gradients(model, batch_x, batch_y)
    model.train_on_batch(batch_x, ml.one_hot(batch_y))
    for layer, (kernel, bias), d_kernel, d_bias in zip(layers, before, kernel_grads, bias_grads):
        expected_kernel = (1 - eta * lam / n) * kernel - eta * d_kernel
        assert np.allclose(layer.kernel.numpy(), expected_kernel, atol=2e-6)
        # Biases are not regularised.
        assert np.allclose(layer.bias.numpy(), bias - eta * d_bias, atol=2e-6)
    # The decay is really there: without it the step would differ measurably.
    no_decay = before[0][0] - eta * kernel_grads[0]
    assert not np.allclose(layers[0].kernel.numpy(), no_decay, atol=1e-7)


def test_saved_model_reopens_and_takes_raw_pixels(tiny_data, tmp_path):
    model = ml.build_model(ml.Config(hidden_layers=1, epochs=1, per_class=5), tiny_data)
    path = tmp_path / "model.keras"
    model.save(path)
    reopened = keras.models.load_model(path)
    assert np.allclose(reopened.predict_on_batch(tiny_data.x_test), model.predict_on_batch(tiny_data.x_test))


@pytest.mark.parametrize("model_kind", ["mlp", "cnn"])
def test_l2_on_hidden_layers_only_leaves_the_output_kernel_free(tiny_data, model_kind):
    """The original's l2(5) sat on the hidden layers only: model.losses must charge every kernel but the output's."""
    config = ml.Config(model=model_kind, hidden_layers=2, l2_lambda=5.0, l2_convention="keras", per_class=5)
    everywhere = ml.build_model(config, tiny_data)
    hidden_only = ml.build_model(dataclasses.replace(config, l2_layers="hidden"), tiny_data)
    for model, output_charged in ((everywhere, True), (hidden_only, False)):
        kernels = {layer.name: layer.kernel.numpy().astype(np.float64) for layer in model.layers
                   if getattr(layer, "kernel", None) is not None}
        expected = 5.0 * sum(np.sum(k ** 2) for name, k in kernels.items() if output_charged or name != "output")
        penalty = sum(float(loss) for loss in model.losses)
        assert penalty == pytest.approx(expected, rel=1e-5)
        assert len(model.losses) == len(kernels) - (0 if output_charged else 1)
    assert hidden_only.get_layer("output").kernel_regularizer is None
    assert hidden_only.get_layer("hidden_1" if model_kind == "mlp" else "conv_1").kernel_regularizer is not None
