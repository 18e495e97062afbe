"""Numerical checks of the book's derivations: softmax likelihood, MAP with a Gaussian prior, weight decay."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .data import one_hot


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits z: y_k = exp(z_k) / sum_j exp(z_j), computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)  # exp of large logits would overflow
    exps = np.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax(z), without forming tiny probabilities first."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """C0 = -(1/N) sum_n log y_{t_n}(x_n): the mean cross-entropy of integer labels under softmax(z)."""
    labels = np.asarray(labels)
    if len(labels) != len(logits):
        raise ValueError(f"need one label per row of logits, got {len(labels)} labels for {len(logits)} rows")
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def logits_of(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The logits z that a softmax-output model's last Dense layer computes before its softmax.

    Runs every layer but the last, then applies the last layer's kernel and bias
    without its activation (inference mode, so dropout and augmentation are off).
    """
    output = model.layers[-1]
    if not isinstance(output, keras.layers.Dense):
        raise ValueError(f"the model's last layer must be Dense, got {type(output).__name__}")
    hidden = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    for layer in model.layers[:-1]:
        hidden = layer(hidden, training=False)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in output.get_weights())
    return np.asarray(hidden, dtype=np.float64) @ kernel + bias


def keras_loss_and_logit_gradient(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Keras' categorical cross-entropy of softmax(z) and its gradient with respect to z (tf.GradientTape)."""
    z = tf.Variable(np.asarray(logits, dtype=np.float64))
    targets = tf.constant(one_hot(labels), dtype=tf.float64)
    loss_function = keras.losses.CategoricalCrossentropy()
    with tf.GradientTape() as tape:
        loss = loss_function(targets, tf.nn.softmax(z))
    return float(loss), tape.gradient(loss, z).numpy()


def logit_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dC0/dz for the mean cross-entropy: (softmax(z) - one-hot(t)) / N."""
    return (softmax(logits) - one_hot(labels).astype(np.float64)) / len(logits)


def ridge_solution(design: np.ndarray, targets: np.ndarray, alpha: float, noise_variance: float) -> np.ndarray:
    """MAP weights for t = X w + noise N(0, sigma^2), prior w ~ N(0, alpha^-1 I): (X^T X + alpha sigma^2 I)^-1 X^T t."""
    if not (alpha > 0 and noise_variance > 0):
        raise ValueError(f"alpha and noise_variance must be > 0, got {alpha} and {noise_variance}")
    design = np.asarray(design, dtype=np.float64)
    penalty = alpha * noise_variance * np.eye(design.shape[1])
    return np.linalg.solve(design.T @ design + penalty, design.T @ np.asarray(targets, dtype=np.float64))


def log_posterior(weights: np.ndarray, design: np.ndarray, targets: np.ndarray, alpha: float,
                  noise_variance: float) -> float:
    """log p(w | D) up to a constant: -(1/(2 sigma^2)) sum (t - X w)^2 - (alpha/2) w^T w."""
    residual = np.asarray(targets) - np.asarray(design) @ weights
    return float(-0.5 * residual @ residual / noise_variance - 0.5 * alpha * weights @ weights)


def map_by_gradient_ascent(design: np.ndarray, targets: np.ndarray, alpha: float, noise_variance: float,
                           learning_rate: float, num_steps: int) -> tuple[np.ndarray, list[float]]:
    """Climb the log posterior from w = 0 by plain gradient ascent; returns w and log p per step."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    design = np.asarray(design, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    weights = np.zeros(design.shape[1])
    trace = []
    for _ in range(num_steps):
        gradient = design.T @ (targets - design @ weights) / noise_variance - alpha * weights
        weights = weights + learning_rate * gradient
        trace.append(log_posterior(weights, design, targets, alpha, noise_variance))
    return weights, trace


def weight_decay_step_difference(model: keras.Model, images: np.ndarray, labels: np.ndarray, l2_lambda: float,
                                 num_train: int, learning_rate: float) -> dict[str, float]:
    """Max |difference| per variable between one Keras SGD step and Nielsen's weight-decay update.

    `model` must carry Keras' l2(lambda / (2 n)) on its kernels and be compiled with plain SGD
    at `learning_rate`. dC0/dw (the unregularised mean cross-entropy on this batch) is taken
    with tf.GradientTape before the step; kernels then should become
    (1 - eta lambda / n) w - eta dC0/dw and biases b - eta dC0/db.
    """
    targets = one_hot(labels)
    pixels = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    before = [v.numpy().astype(np.float64) for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        probabilities = model(pixels, training=True)
        unregularised = keras.losses.CategoricalCrossentropy()(targets, probabilities)
    gradients = [g.numpy().astype(np.float64) for g in tape.gradient(unregularised, model.trainable_variables)]
    model.train_on_batch(pixels, targets)
    differences = {}
    for variable, weights, gradient in zip(model.trainable_variables, before, gradients):
        decay = 1.0 - learning_rate * l2_lambda / num_train if variable.name == "kernel" else 1.0
        expected = decay * weights - learning_rate * gradient
        name = variable.path
        differences[name] = float(np.abs(variable.numpy() - expected).max())
    return differences
