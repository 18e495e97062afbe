import keras
import numpy as np

import mnistlab as ml
from numpy_reference import numpy_mlp_gradients


def fit_with(model, data, callbacks, epochs=2, learning_rate=0.1):
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="categorical_crossentropy")
    return model.fit(data.x_train, ml.one_hot(data.y_train), batch_size=10, epochs=epochs, verbose=0,
                     callbacks=callbacks)


def test_zero_one_error_matches_a_hand_count(tiny_data):
    ml.set_seed(0)
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, seed=0)
    callback = ml.ZeroOneError(tiny_data.x_train, tiny_data.y_train, tiny_data.x_test, tiny_data.y_test)
    history = fit_with(model, tiny_data, [callback])
    for key, x, labels in (("zero_one_error", tiny_data.x_train, tiny_data.y_train),
                           ("val_zero_one_error", tiny_data.x_test, tiny_data.y_test)):
        predictions = model.predict_on_batch(x)
        wrong = sum(int(np.argmax(row) != label) for row, label in zip(predictions, labels))
        assert len(history.history[key]) == 2
        assert history.history[key][-1] == wrong / len(labels)


def test_learning_speed_matches_numpy_backprop(tiny_data):
    ml.set_seed(0)
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=3, seed=2)
    speed = ml.LearningSpeed(tiny_data.x_train, tiny_data.y_train)
    initial_kernels = [layer.kernel.numpy().copy() for layer in ml.hidden_layers_of(model)]
    _, _, bias_grads = numpy_mlp_gradients(model, tiny_data.x_train, tiny_data.y_train)
    expected_initial = [np.linalg.norm(g) for g in bias_grads[:-1]]
    history = fit_with(model, tiny_data, [speed], epochs=1)
    _, _, bias_grads = numpy_mlp_gradients(model, tiny_data.x_train, tiny_data.y_train)
    for k in range(1, 4):
        values = speed.history[f"speed_hidden_{k}"]
        assert len(values) == 2
        assert np.isclose(values[0], expected_initial[k - 1], rtol=1e-4)
        assert np.isclose(values[1], np.linalg.norm(bias_grads[k - 1]), rtol=1e-4)
        assert history.history[f"speed_hidden_{k}"] == values[1:]
        new = ml.hidden_layers_of(model)[k - 1].kernel.numpy()
        old = initial_kernels[k - 1]
        expected_change = np.mean(np.abs(new - old) / np.abs(old))
        changes = speed.history[f"weight_change_hidden_{k}"]
        assert changes[0] == 0.0 and np.isclose(changes[1], expected_change, rtol=1e-4)
    # Vanishing gradients at initialisation: the first layer learns slower than the last.
    assert speed.history["speed_hidden_1"][0] < speed.history["speed_hidden_3"][0]


def test_weight_change_skips_zero_weights(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, seed=0)
    kernel = model.get_layer("hidden_1").kernel
    kernel.assign(np.where(np.arange(kernel.shape[1]) % 2 == 0, 0.0, kernel.numpy()))
    speed = ml.LearningSpeed(tiny_data.x_train, tiny_data.y_train)
    fit_with(model, tiny_data, [speed], epochs=1)
    assert np.isfinite(speed.history["weight_change_hidden_1"][1])


def test_softmax_regression_has_no_speed_keys(tiny_data):
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=0)
    speed = ml.LearningSpeed(tiny_data.x_train, tiny_data.y_train)
    history = fit_with(model, tiny_data, [speed], epochs=1)
    assert speed.history == {} and not any(key.startswith("speed") for key in history.history)


def test_divergence_guard_stops_on_nan(tiny_data):
    ml.set_seed(0)
    model = ml.build_mlp(tiny_data.x_train, hidden_layers=1, activation="relu", seed=0)
    guard = ml.DivergenceGuard()
    history = fit_with(model, tiny_data, [guard], epochs=20, learning_rate=1e8)
    assert guard.diverged
    assert len(history.history["loss"]) < 20
    assert not np.isfinite(history.history["loss"][-1]) or guard.epoch is not None


def test_divergence_guard_quiet_on_healthy_training(tiny_data):
    guard = ml.DivergenceGuard()
    fit_with(ml.build_mlp(tiny_data.x_train, 1), tiny_data, [guard], epochs=1)
    assert not guard.diverged
