"""Independent NumPy forward and backward passes that the tests check mnistlab against."""

import numpy as np

DERIVATIVES = {  # of each hidden activation, written in terms of its output a (and input z)
    "sigmoid": lambda a, z: a * (1 - a),
    "tanh": lambda a, z: 1 - a * a,
    "relu": lambda a, z: (z > 0).astype(np.float64),
}
ACTIVATIONS = {
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
}


def sigmoid(z):
    return ACTIVATIONS["sigmoid"](z)


def softmax(z):
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _dense_layers(model):
    return [layer for layer in model.layers if layer.name.startswith(("hidden_", "output"))]


def numpy_mlp_gradients(model, x_raw, labels):
    """(loss, kernel gradients, bias gradients) of the model's unregularised mean cross-entropy (see below)."""
    return forward_backward(model, x_raw, labels)[:3]


def forward_backward(model, x_raw, labels, weights=None):
    """Independent forward and backward pass of an mnistlab MLP in float64 NumPy.

    `weights` (default: the model's) is a list of (kernel, bias) pairs, hidden layers first.
    Returns (loss, kernel gradients, bias gradients, probabilities) of the unregularised mean
    cross-entropy, hidden layers first, output last.
    """
    layers = _dense_layers(model)
    activation = layers[0].get_config()["activation"] if len(layers) > 1 else "sigmoid"
    norm = model.get_layer("standardise")
    mean = np.asarray(norm.mean, dtype=np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(norm.variance, dtype=np.float64).reshape(-1)), 1e-7)
    activations = [(x_raw.reshape(len(x_raw), -1).astype(np.float64) - mean) / std]
    if weights is None:
        weights = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in layers]
    weights = [(np.asarray(k, np.float64), np.asarray(b, np.float64)) for k, b in weights]
    inputs = []
    for kernel, bias in weights[:-1]:
        inputs.append(activations[-1] @ kernel + bias)
        activations.append(ACTIVATIONS[activation](inputs[-1]))
    probabilities = softmax(activations[-1] @ weights[-1][0] + weights[-1][1])
    count = len(labels)
    loss = -np.mean(np.log(probabilities[np.arange(count), labels]))
    target = np.zeros_like(probabilities)
    target[np.arange(count), labels] = 1.0
    delta = (probabilities - target) / count
    kernel_grads, bias_grads = [], []
    for index in range(len(weights) - 1, -1, -1):
        kernel_grads.insert(0, activations[index].T @ delta)
        bias_grads.insert(0, delta.sum(axis=0))
        if index:
            delta = (delta @ weights[index][0].T) * DERIVATIVES[activation](activations[index], inputs[index - 1])
    return loss, kernel_grads, bias_grads, probabilities


def penalty(model, weights=None) -> float:
    """Keras' L2 term: the coefficient of each regularised kernel times the sum of its squares."""
    total = 0.0
    for index, layer in enumerate(_dense_layers(model)):
        regularizer = layer.kernel_regularizer
        if regularizer is not None:
            kernel = layer.kernel.numpy() if weights is None else weights[index][0]
            total += float(regularizer.l2) * float(np.sum(np.asarray(kernel, np.float64) ** 2))
    return total


def split_metrics(probabilities, labels, l2_term: float, prefix: str) -> dict:
    """zero-one error, C0 and C0 + penalty of class probabilities, as EpochMetrics names them."""
    labels = np.asarray(labels)
    error = float(np.mean(np.argmax(probabilities, axis=1) != labels))
    cross_entropy = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))
    values = {f"{prefix}zero_one_error": error, f"{prefix}cross_entropy": cross_entropy}
    if prefix:
        values.update({f"{prefix}loss": cross_entropy + l2_term, f"{prefix}accuracy": 1.0 - error})
    return values


def mlp_metrics(model, data, weights, previous=None) -> dict:
    """Every EpochMetrics key of an MLP with `weights` ((kernel, bias) pairs), from NumPy alone.

    `previous`: the weights one epoch before, for the weight changes (left out if None).
    """
    l2_term = penalty(model, weights)
    values = {"penalty": l2_term}
    for prefix, (images, labels) in (("", (data.x_train, data.y_train)), ("val_", (data.x_val, data.y_val)),
                                     ("test_", (data.x_test, data.y_test))):
        _, _, bias_grads, probabilities = forward_backward(model, images, labels, weights)
        values.update(split_metrics(probabilities, labels, l2_term, prefix))
        if not prefix:
            for k, gradient in enumerate(bias_grads[:-1], start=1):
                values[f"speed_hidden_{k}"] = float(np.linalg.norm(gradient))
    if previous is not None:
        for k, ((new, _), (old, _)) in enumerate(zip(weights[:-1], previous[:-1]), start=1):
            new, old = np.asarray(new, np.float64), np.asarray(old, np.float64)
            moved = old != 0
            values[f"weight_change_hidden_{k}"] = float(np.mean(np.abs(new[moved] - old[moved]) / np.abs(old[moved])))
            values[f"norm_change_hidden_{k}"] = float(np.linalg.norm(new - old) / np.linalg.norm(old))
    return values
