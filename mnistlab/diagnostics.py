"""Measurements for the learning-speed and what-went-wrong chapters: gradients, weight decay, loss scale."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .data import one_hot, standardisation_stats
from .models import hidden_layers_of, l2_coefficient

OUTPUTS = ("softmax", "sigmoid")
SCALINGS = ("standardise", "unit")

# Nielsen, Neural Networks and Deep Learning, ch. 5: ||dC/db^l|| per hidden layer at
# initialisation (input side first), as printed in the book.
NIELSEN_PUBLISHED_SPEEDS = {
    2: (0.07, 0.31),
    3: (0.012, 0.060, 0.283),
    4: (0.003, 0.017, 0.070, 0.285),
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def prepare_inputs(images: np.ndarray, reference: np.ndarray | None = None, scaling: str = "standardise") -> np.ndarray:
    """Flatten raw (N, 28, 28) pixels to float64 rows the NumPy nets take.

    standardise: per pixel with the mean and variance of `reference` (default: `images`),
        as the course's models do inside their Normalization layer.
    unit: pixel / 255, Nielsen's inputs in [0, 1].
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if scaling == "unit":
        return flat / 255.0
    mean, variance = standardisation_stats(images if reference is None else reference)
    return (flat - mean.astype(np.float64)) / np.sqrt(variance.astype(np.float64))


def nielsen_parameters(layer_sizes: list[int], seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Nielsen's initialisation: weights N(0, 1/n_in), biases N(0, 1), kernels shaped (n_in, n_out)."""
    if len(layer_sizes) < 2 or any(int(size) < 1 for size in layer_sizes):
        raise ValueError(f"layer_sizes needs at least two sizes >= 1, got {layer_sizes!r}")
    generator = np.random.default_rng(seed)
    weights, biases = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        weights.append(generator.normal(0.0, 1.0 / np.sqrt(n_in), size=(n_in, n_out)))
        biases.append(generator.normal(0.0, 1.0, size=n_out))
    return weights, biases


def bias_gradients(weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, targets: np.ndarray,
                   output: str = "softmax") -> list[np.ndarray]:
    """dC/db for every layer of a sigmoid MLP by backpropagation in NumPy (output layer last).

    C is the mean over the rows of x of the per-image cost:
    softmax: -sum_j y_j log p_j (categorical cross-entropy, the course's nets);
    sigmoid: -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)] (Nielsen's network2).
    Both give output error a - y, which is why they differ only through the activations.
    """
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if len(weights) != len(biases) or not weights:
        raise ValueError("weights and biases must be non-empty lists of the same length")
    activations, zs = [np.asarray(x, dtype=np.float64)], []
    for k, (w, b) in enumerate(zip(weights, biases)):
        z = activations[-1] @ w + b
        zs.append(z)
        if k < len(weights) - 1 or output == "sigmoid":
            activations.append(_sigmoid(z))
        else:
            shifted = np.exp(z - z.max(axis=1, keepdims=True))
            activations.append(shifted / shifted.sum(axis=1, keepdims=True))
    delta = (activations[-1] - np.asarray(targets, dtype=np.float64)) / len(x)
    gradients = [delta.sum(axis=0)]
    for k in range(len(weights) - 2, -1, -1):
        s = _sigmoid(zs[k])
        delta = (delta @ weights[k + 1].T) * s * (1.0 - s)
        gradients.append(delta.sum(axis=0))
    return gradients[::-1]


def speeds_at_initialisation(hidden_layers: int, x: np.ndarray, targets: np.ndarray, seeds=(0,), units: int = 30,
                             output: str = "softmax") -> np.ndarray:
    """Nielsen's learning speed ||dC/db^l|| of each hidden layer of a freshly initialised net.

    The net is 784-units-...-units-10 with Nielsen's initialisation, one row per seed,
    one column per hidden layer (input side first).
    """
    if hidden_layers < 1:
        raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers}")
    sizes = [x.shape[1]] + [units] * hidden_layers + [targets.shape[1]]
    rows = []
    for seed in seeds:
        weights, biases = nielsen_parameters(sizes, seed)
        gradients = bias_gradients(weights, biases, x, targets, output)
        rows.append([float(np.linalg.norm(g)) for g in gradients[:-1]])
    return np.array(rows)


class WeightNormChange(keras.callbacks.Callback):
    """How much each hidden layer's kernel moved in an epoch, as a whole: ||W_new - W_old|| / ||W_old||.

    Unlike the mean of the entry-wise ratios |dW / W|, which the few weights that happen
    to lie near zero dominate, this ratio of norms weighs every entry by its size.
    `history["norm_change_hidden_<k>"]` gets one value per epoch, with 0 at initialisation
    in front so it lines up with the other learning-speed lists (epochs + 1 values).
    """

    def on_train_begin(self, logs=None):
        self._previous = [layer.kernel.numpy().astype(np.float64) for layer in hidden_layers_of(self.model)]
        self.history = {f"norm_change_hidden_{k}": [0.0] for k in range(1, len(self._previous) + 1)}

    def on_epoch_end(self, epoch, logs=None):
        current = [layer.kernel.numpy().astype(np.float64) for layer in hidden_layers_of(self.model)]
        for k, (old, new) in enumerate(zip(self._previous, current), start=1):
            size = np.linalg.norm(old)
            self.history[f"norm_change_hidden_{k}"].append(float(np.linalg.norm(new - old) / size) if size else 0.0)
        self._previous = current


def weight_decay_factor(learning_rate: float, l2_lambda: float, num_train: int, convention: str = "nielsen") -> float:
    """The factor plain SGD multiplies every kernel weight by in one step, before the data gradient.

    Keras adds c * sum w^2 to each mini-batch loss (c from `l2_coefficient`), whose
    gradient is 2 c w, so w <- (1 - 2 eta c) w - eta dC0/dw. Nielsen's convention gives
    1 - eta lambda / n; the literal keras l2(lambda) gives 1 - 2 eta lambda, which is 0 or
    negative once eta >= 1 / (2 lambda).
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    return 1.0 - 2.0 * learning_rate * l2_coefficient(l2_lambda, num_train, convention)


def _kernels(model: keras.Model) -> list:
    return [layer.kernel for layer in model.layers if getattr(layer, "kernel", None) is not None]


def squared_weights(model: keras.Model) -> float:
    """Sum of the squared kernel entries, the quantity an L2 penalty charges for (biases excluded)."""
    return float(sum(np.sum(np.square(kernel.numpy().astype(np.float64))) for kernel in _kernels(model)))


def summarise(result, data) -> dict:
    """The numbers a chapter reports about one finished run, rounded to 4 decimals.

    Final train/test accuracy and their gap, the best held-out accuracy over the epochs
    and its epoch (from 1), the final model's held-out cross-entropy without and its L2
    penalty term, its sum of squared weights, and the lowest held-out loss (as Keras
    logs it, penalty included) with its epoch and the last one.
    """
    history = result.history
    test_errors = np.array([np.nan if v is None else v for v in history["val_zero_one_error"]], dtype=float)
    test_losses = np.array([np.nan if v is None else v for v in history["val_loss"]], dtype=float)
    test_loss = loss_parts(result.model, data.x_val, data.y_val)
    values = {
        "train_accuracy": result.final["train_accuracy"], "test_accuracy": result.final["test_accuracy"],
        "gap": result.final["train_accuracy"] - result.final["test_accuracy"],
        "best_test_accuracy": 1.0 - float(np.nanmin(test_errors)), "best_epoch": int(np.nanargmin(test_errors)) + 1,
        "test_cross_entropy": test_loss["cross_entropy"], "penalty": test_loss["penalty"],
        "squared_weights": squared_weights(result.model),
        "min_test_loss": float(np.nanmin(test_losses)), "min_test_loss_epoch": int(np.nanargmin(test_losses)) + 1,
        "final_test_loss": float(test_losses[-1]),
    }
    return {key: round(float(value), 4) if isinstance(value, float) else value for key, value in values.items()}


def loss_parts(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """The two terms of the training loss at the current weights: mean cross-entropy and L2 penalty."""
    probabilities = model(np.asarray(images), training=False)
    cross_entropy = float(tf.reduce_mean(keras.losses.categorical_crossentropy(one_hot(labels), probabilities)))
    penalty = float(sum(float(loss) for loss in model.losses)) if model.losses else 0.0
    return {"cross_entropy": cross_entropy, "penalty": penalty}


def gradient_norms(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Norms of the gradients of the cross-entropy and of the L2 penalty for every kernel.

    Returns {layer name: {"data": ||dC0/dW||, "penalty": ||dP/dW||, "weight": ||W||}},
    the data term averaged over all `images` (inference mode).
    """
    kernels = _kernels(model)
    targets = one_hot(labels)
    with tf.GradientTape(persistent=True) as tape:
        probabilities = model(np.asarray(images), training=False)
        cross_entropy = tf.reduce_mean(keras.losses.categorical_crossentropy(targets, probabilities))
        penalty = tf.add_n([tf.convert_to_tensor(loss) for loss in model.losses]) if model.losses else None
    data_gradients = tape.gradient(cross_entropy, [k.value for k in kernels])
    penalty_gradients = (tape.gradient(penalty, [k.value for k in kernels]) if penalty is not None
                         else [None] * len(kernels))
    del tape
    norms = {}
    for kernel, data_gradient, penalty_gradient in zip(kernels, data_gradients, penalty_gradients):
        name = kernel.path.split("/")[-2] if "/" in kernel.path else kernel.name
        norms[name] = {"data": float(tf.norm(data_gradient)),
                       "penalty": float(tf.norm(penalty_gradient)) if penalty_gradient is not None else 0.0,
                       "weight": float(tf.norm(kernel.value))}
    return norms


def first_steps(model: keras.Model, images: np.ndarray, labels: np.ndarray, num_steps: int = 20,
                batch_size: int = 10, seed: int = 0) -> dict:
    """Take `num_steps` mini-batch steps with the model's compiled optimiser and record each one.

    Returns per step: "loss" (mini-batch training loss, penalty included), "step" (mean |dW|
    over all kernel entries), "weight" (root mean square of the kernel entries after the
    step); and "initial_weight" before the first step. Mini-batches are drawn without
    replacement from a permutation seeded by `seed`.
    """
    if num_steps < 1 or batch_size < 1:
        raise ValueError(f"num_steps and batch_size must be >= 1, got {num_steps} and {batch_size}")
    images, targets = np.asarray(images), one_hot(labels)
    order = np.random.default_rng(seed).permutation(len(images))
    kernels = _kernels(model)

    def flat_kernels():
        return np.concatenate([k.numpy().ravel() for k in kernels])

    record = {"loss": [], "step": [], "weight": []}
    before = flat_kernels()
    record["initial_weight"] = float(np.sqrt(np.mean(before ** 2)))
    for step in range(num_steps):
        start = (step * batch_size) % len(images)
        rows = order[start:start + batch_size]
        loss = model.train_on_batch(images[rows], targets[rows], return_dict=True)["loss"]
        after = flat_kernels()
        record["loss"].append(float(loss))
        record["step"].append(float(np.mean(np.abs(after - before))))
        record["weight"].append(float(np.sqrt(np.mean(after ** 2))))
        before = after
    return record
