"""Independent NumPy forward and backward passes that the tests check mnistlab against."""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    shifted = np.exp(z - z.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def numpy_mlp_gradients(model, x_raw, labels):
    """Independent forward and backward pass of a sigmoid/softmax MLP in float64 NumPy.

    Returns (loss, kernel gradients, bias gradients) of the unregularised mean cross-entropy,
    hidden layers first, output last.
    """
    layers = [layer for layer in model.layers if layer.name.startswith(("hidden_", "output"))]
    norm = model.get_layer("standardise")
    mean = np.asarray(norm.mean, dtype=np.float64).reshape(-1)
    std = np.maximum(np.sqrt(np.asarray(norm.variance, dtype=np.float64).reshape(-1)), 1e-7)
    activations = [(x_raw.reshape(len(x_raw), -1).astype(np.float64) - mean) / std]
    weights = [(layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)) for layer in layers]
    for kernel, bias in weights[:-1]:
        activations.append(sigmoid(activations[-1] @ kernel + bias))
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
            a = activations[index]
            delta = (delta @ weights[index][0].T) * a * (1 - a)
    return loss, kernel_grads, bias_grads
