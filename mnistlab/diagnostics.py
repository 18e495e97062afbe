"""Measurements for the data, learning-speed and what-went-wrong chapters: standardisation, gradients, weight decay, run summaries."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .data import one_hot, standardisation_stats
from .models import l2_coefficient

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


def standardise(images: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Raw (N, 28, 28) pixels as float64 rows of 784, standardised per pixel with `reference`'s statistics.

    The mean and variance come from `ml.standardisation_stats(reference)` (default: `images`
    themselves), the statistics the course's MLPs build into their first layer when
    `reference` is their training set.
    """
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    mean, variance = standardisation_stats(images if reference is None else reference)
    return (flat - mean.astype(np.float64)) / np.sqrt(variance.astype(np.float64))


def prepare_inputs(images: np.ndarray, reference: np.ndarray | None = None, scaling: str = "standardise") -> np.ndarray:
    """Flatten raw (N, 28, 28) pixels to float64 rows the NumPy nets take.

    standardise: per pixel with the mean and variance of `reference` (default: `images`),
        as the course's models do inside their Normalization layer (`standardise`).
    unit: pixel / 255, Nielsen's inputs in [0, 1].
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    if scaling == "unit":
        return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    return standardise(images, reference)


def predict_with_statistics(model: keras.Model, images: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities of an mnistlab model whose standardisation uses `reference`'s statistics.

    The model's own `standardise` layer always applies its training set's statistics; this
    runs the layers before it, standardises with the mean and variance of `reference`
    instead (default: `images` themselves, as the original notebook did when it refitted
    its scaler on the test set) and runs the rest (inference mode). Per pixel for the MLPs,
    one mean and variance over all pixels for the CNN, as each model's own layer does.
    With `reference` = the training images it reproduces the model's own predictions.
    """
    names = [layer.name for layer in model.layers]
    if "standardise" not in names:
        raise ValueError("the model has no layer named 'standardise'")
    index = names.index("standardise")

    def before(pixels):
        hidden = tf.convert_to_tensor(np.asarray(pixels, dtype=np.float32))
        for layer in model.layers[:index]:
            hidden = layer(hidden, training=False)
        return np.asarray(hidden, dtype=np.float64)

    inputs = before(images)
    statistics = inputs if reference is None else before(reference)
    if np.size(model.layers[index].mean) == 1:  # the CNN: one mean and spread over all pixels
        mean, variance = statistics.mean(), statistics.var()
        variance = variance if variance > 0 else 1.0
    else:
        mean, variance = (v.astype(np.float64) for v in standardisation_stats(statistics))
    hidden = tf.convert_to_tensor(((inputs - mean) / np.sqrt(variance)).astype(np.float32))
    for layer in model.layers[index + 1:]:
        hidden = layer(hidden, training=False)
    return np.asarray(hidden)


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


def _series(history: dict, key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in history.get(key, [])], dtype=float)


def summarise_run(result) -> dict:
    """The numbers a chapter reports about one finished run, floats rounded to 4 decimals.

    Choices are made on the validation split, the test split only reports:
    status ("ok", "diverged", or "empty" when no epoch ran), epochs_run, the final
    train/val/test accuracy and the gap train - val, the best validation accuracy over the
    epochs with its epoch (from 1) and the test accuracy at that epoch, the final
    validation and test cross-entropy C0 (penalty left out), the penalty term and the sum of
    squared weights, and the lowest validation loss (penalty included, as Keras logs it)
    with its epoch and the last one. A value that no finite epoch supports is None.
    """
    history, final = result.history, result.final
    val_errors, val_losses = _series(history, "val_zero_one_error"), _series(history, "val_loss")
    test_errors = _series(history, "test_zero_one_error")
    epochs_run = len(history.get("loss", []))
    status = "diverged" if result.diverged else ("empty" if epochs_run == 0 else "ok")

    def best(values):
        finite = np.isfinite(values)
        return int(np.argmin(np.where(finite, values, np.inf))) if finite.any() else None

    best_epoch, lowest_loss = best(val_errors), best(val_losses)
    train, val = final.get("train_accuracy"), final.get("val_accuracy")
    values = {
        "status": status, "epochs_run": epochs_run,
        "train_accuracy": train, "val_accuracy": val, "test_accuracy": final.get("test_accuracy"),
        "gap": None if train is None or val is None else train - val,
        "best_val_accuracy": None if best_epoch is None else 1.0 - val_errors[best_epoch],
        "best_epoch": None if best_epoch is None else best_epoch + 1,
        "test_accuracy_at_best_epoch": None if best_epoch is None else 1.0 - test_errors[best_epoch],
        "val_cross_entropy": final.get("val_cross_entropy"), "test_cross_entropy": final.get("test_cross_entropy"),
        "penalty": final.get("penalty"),
        "squared_weights": squared_weights(result.model) if result.model is not None else None,
        "min_val_loss": None if lowest_loss is None else val_losses[lowest_loss],
        "min_val_loss_epoch": None if lowest_loss is None else lowest_loss + 1,
        "final_val_loss": final.get("val_loss"),
    }
    return {key: round(float(value), 4) if isinstance(value, (float, np.floating)) and math.isfinite(value)
            else (None if isinstance(value, (float, np.floating)) else value) for key, value in values.items()}


def layer_statistics(model: keras.Model, images: np.ndarray) -> dict:
    """How large each Dense layer's kernel is and how much its outputs still differ between `images`.

    Returns {layer name: {"weight_rms": root mean square of the kernel entries,
    "activation_spread": the standard deviation over `images` of each unit's output (after
    the activation), averaged over the units}}, input side first, in inference mode. A
    spread of zero means the layer gives every image the same output, so every later layer
    does too: the network predicts one class for everything.
    """
    images = np.asarray(images)
    if images.ndim < 2 or len(images) < 2:
        raise ValueError(f"need at least two images to measure a spread, got shape {images.shape}")
    statistics = {}
    hidden = tf.convert_to_tensor(images.astype(np.float32))
    for layer in model.layers:
        hidden = layer(hidden, training=False)
        kernel = getattr(layer, "kernel", None)
        if isinstance(layer, keras.layers.Dense) and kernel is not None:
            outputs = np.asarray(hidden, dtype=np.float64)
            statistics[layer.name] = {
                "weight_rms": float(np.sqrt(np.mean(np.square(kernel.numpy().astype(np.float64))))),
                "activation_spread": float(outputs.std(axis=0).mean()),
            }
    if not statistics:
        raise ValueError("the model has no Dense layer")
    return statistics


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


def best_epoch(history: dict, key: str, mode: str = "min") -> int | None:
    """The epoch (from 1) of the lowest (`mode="min"`) or highest (`"max"`) finite value of `history[key]`.

    The first such epoch on ties, as Keras' EarlyStopping keeps the first best; None when no
    epoch has a finite value (or the key is missing).
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    values = _series(history, key)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    chosen = np.where(finite, values, np.inf if mode == "min" else -np.inf)
    return int(np.argmin(chosen) if mode == "min" else np.argmax(chosen)) + 1


def compare_seeds(values, reference) -> str:
    """How one configuration's per-seed values stand against another's, judged by their whole ranges.

    "higher" when every value lies above every reference value, "lower" when every value lies
    below, "overlapping" otherwise: a difference that the seed-to-seed spread could produce.
    """
    values = np.asarray(values, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if values.size == 0 or reference.size == 0:
        raise ValueError("need at least one value on each side")
    if not (np.isfinite(values).all() and np.isfinite(reference).all()):
        raise ValueError("values must be finite")
    if values.min() > reference.max():
        return "higher"
    if values.max() < reference.min():
        return "lower"
    return "overlapping"
