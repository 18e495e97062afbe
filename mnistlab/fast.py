"""The fast engine behind `ml.train`: an epoch of mini-batch steps as one compiled call (XLA for MLPs), its metrics as one more."""

from __future__ import annotations

import hashlib
import math
import threading

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from .models import hidden_layers_of

# Compiled programs by architecture: models that differ only in weights, L2 strength or
# learning rate (the six study configurations pair up this way) share one compilation.
_PROGRAMS: dict = {}
_PROGRAMS_LOCK = threading.Lock()


def input_pipeline(x, y_onehot, batch_size: int, orders: np.ndarray) -> tf.data.Dataset:
    """Mini-batches of (pixels, one-hot labels), epoch after epoch in the given row orders.

    One dataset for the whole run: `fit` with steps_per_epoch = ceil(N / batch_size)
    reads it straight through, so the keras engine sees exactly the fast engine's order.
    """
    x = tf.constant(np.asarray(x, dtype=np.float32))
    y_onehot = tf.constant(np.asarray(y_onehot, dtype=np.float32))
    return (tf.data.Dataset.from_tensor_slices(np.asarray(orders, np.int32))
            .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size))
            .map(lambda rows: (tf.gather(x, rows), tf.gather(y_onehot, rows))))


def shuffled_orders(num_samples: int, num_epochs: int, seed: int) -> np.ndarray:
    """Row order of every epoch, (num_epochs, num_samples), a fresh permutation per epoch from `seed`.

    NumPy's seeded generator, not TensorFlow's global seed, so runs in parallel threads
    cannot disturb each other's order.
    """
    generator = np.random.default_rng(seed)
    orders = [generator.permutation(num_samples) for _ in range(num_epochs)]
    return np.array(orders, dtype=np.int32).reshape(num_epochs, num_samples)


def clear_compiled() -> None:
    """Forget every compiled program (the benchmark uses this to time compilation too)."""
    _PROGRAMS.clear()


class _TensorL2(keras.regularizers.Regularizer):
    """Keras' L2 penalty, coefficient * sum(w^2), with the coefficient fed in at call time."""

    # A Regularizer subclass: Keras 3.10 (Colab's, the oldest supported) accepts no other as a variable's
    # regularizer; 3.15 does not check.

    def __init__(self):
        self.coefficient = None

    def __call__(self, weights):
        return self.coefficient * ops.sum(ops.square(weights))


def _penalty_coefficient(model: keras.Model) -> float:
    """The L2 coefficient on the model's kernels (0 without regularisation)."""
    regularizers = [v.regularizer for v in model.trainable_variables if v.regularizer is not None]
    if not all(isinstance(r, keras.regularizers.L2) for r in regularizers):
        raise ValueError("the fast engine knows L2 regularisation only; use engine='keras'")
    coefficients = {float(r.l2) for r in regularizers}
    if len(coefficients) > 1:
        raise ValueError(f"the fast engine needs one L2 coefficient for all kernels, got {sorted(coefficients)}")
    return coefficients.pop() if coefficients else 0.0


def _cross_entropy(y_onehot, probabilities):
    # Keras' own loss function: on a softmax output it works from the logits, as `fit` does.
    return ops.mean(keras.losses.categorical_crossentropy(y_onehot, probabilities))


def _wrong(y_onehot, probabilities):
    return ops.cast(ops.argmax(probabilities, axis=1) != ops.argmax(y_onehot, axis=1), "float32")


class _Program:
    """A template model of one architecture and the compiled functions that train it.

    Any model of the same architecture is trained by copying its weights, its optimizer's
    state and its L2 coefficient (fed in as a number) into the template, running the
    compiled epochs there and copying the results back: one trace and one XLA
    compilation serve every model of this architecture.
    """

    def __init__(self, template: keras.Model, optimizer, batch_size: int, jit_compile: bool):
        self.template = template
        self.lock = threading.Lock()  # one run at a time may use the template's variables
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.penalty = _TensorL2()
        self.regularised = [v.regularizer is not None for v in template.trainable_variables]
        for variable in template.trainable_variables:
            if variable.regularizer is not None:
                variable.regularizer = self.penalty
        optimizer.build(template.trainable_variables)
        hidden = hidden_layers_of(template)
        self.kernels = [layer.kernel for layer in hidden]
        self.biases = [layer.bias for layer in hidden]
        # Plain tracing (no autograph): the loop is written as tf.while_loop, and autograph's
        # source conversion would cost about a second per architecture.
        # Without XLA (the CNN: XLA refuses MaxPool's gradient under op determinism and its
        # CPU convolutions are far slower than oneDNN's) the epoch is still one graph call:
        # 0.53-0.64 s per CNN epoch against 0.69-0.77 s for one call per mini-batch. In the
        # loop body Grappler's remapper declines to fuse the first convolution with its
        # LeakyReLU and logs an error (hidden at TF_CPP_MIN_LOG_LEVEL=3, which the package
        # sets); the results are bit-identical with remapping switched off.
        self.train_epoch = tf.function(self._train_epoch, jit_compile=jit_compile, autograph=False)
        # The metrics run once per epoch on whole sets: plain graph mode is about as fast
        # there and saves an XLA compilation (about a second of CPU) per architecture.
        self.measure = tf.function(self._measure, autograph=False)

    def variables(self) -> list:
        return (list(self.template.trainable_variables) + list(self.template.non_trainable_variables)
                + list(self.optimizer.variables))

    def _loss(self, x, y_onehot, training):
        probabilities = self.template(x, training=training)
        loss = _cross_entropy(y_onehot, probabilities)
        penalties = self.template.losses
        if penalties:  # Keras' compute_loss: data loss plus every regularisation loss
            loss = ops.sum(ops.stack([loss] + [ops.sum(p) for p in penalties]))
        return loss, probabilities

    def _step(self, l2, x, y_onehot, rows):
        """One mini-batch update on `rows`; its size-weighted loss and number of wrong predictions."""
        self.penalty.coefficient = l2
        weights = self.template.trainable_variables
        xb, yb = tf.gather(x, rows), tf.gather(y_onehot, rows)
        with tf.GradientTape() as tape:
            loss, probabilities = self._loss(xb, yb, True)
        self.optimizer.apply(tape.gradient(loss, weights), weights)
        size = float(rows.shape[0])  # Keras weights each batch's loss by its size
        return loss * size, ops.sum(_wrong(yb, probabilities))

    @staticmethod
    def _changes(before, kernels):
        """Mean relative change |W_new - W_old| / |W_old| of each kernel, entries with W_old = 0 left out."""
        changes = []
        for old, kernel in zip(before, kernels):
            moved = ops.cast(old != 0, "float32")
            relative = ops.abs(kernel - old) / ops.where(old != 0, ops.abs(old), 1.0)
            changes.append(ops.sum(relative * moved) / ops.maximum(ops.sum(moved), 1.0))
        return ops.stack(changes) if changes else ops.zeros((0,))

    def _train_epoch(self, l2, x, y_onehot, order):
        """One pass over the rows in `order`, stopping at the first non-finite loss.

        Returns the epoch's loss and accuracy as `fit` logs them (running means over the
        mini-batches) and each hidden kernel's mean relative change during the epoch.
        """
        before = [tf.identity(kernel.value) for kernel in self.kernels]  # a read now, not a handle
        full, rest = divmod(x.shape[0], self.batch_size)

        def running(i, loss_sum, wrong_sum, seen):
            return tf.logical_and(i < full, tf.math.is_finite(loss_sum))

        def body(i, loss_sum, wrong_sum, seen):
            loss, wrong = self._step(l2, x, y_onehot, tf.slice(order, [i * self.batch_size], [self.batch_size]))
            return i + 1, loss_sum + loss, wrong_sum + wrong, seen + self.batch_size

        zero = tf.constant(0.0)
        _, loss_sum, wrong_sum, seen = tf.while_loop(running, body, (tf.constant(0), zero, zero, zero))
        if rest:
            def last():
                loss, wrong = self._step(l2, x, y_onehot, order[full * self.batch_size:])
                return loss_sum + loss, wrong_sum + wrong, seen + rest

            loss_sum, wrong_sum, seen = tf.cond(tf.math.is_finite(loss_sum), last,
                                                lambda: (loss_sum, wrong_sum, seen))
        return loss_sum / seen, (seen - wrong_sum) / seen, self._changes(before, self.kernels)

    def _measure(self, l2, x_train, y_train, x_test, y_test):
        """Every per-epoch metric of the current weights, on the whole training and held-out sets.

        Wrong predictions come back as counts, so the caller's error rates are exact fractions.
        """
        self.penalty.coefficient = l2
        with tf.GradientTape(watch_accessed_variables=bool(self.biases)) as tape:
            probabilities = self.template(x_train, training=False)
            data_loss = _cross_entropy(y_train, probabilities)  # unregularised: Nielsen's dC/db
        bias_gradients = tape.gradient(data_loss, self.biases) if self.biases else []
        val_loss, test_probabilities = self._loss(x_test, y_test, False)
        return {"wrong_train": ops.sum(_wrong(y_train, probabilities)), "val_loss": val_loss,
                "wrong_test": ops.sum(_wrong(y_test, test_probabilities)),
                "speed": ops.stack([tf.norm(g) for g in bias_gradients]) if bias_gradients else ops.zeros((0,))}


_IGNORED = {"name", "seed", "dtype", "kernel_initializer", "bias_initializer", "kernel_regularizer",
            "bias_regularizer", "mean", "variance"}


def _constants_digest(model: keras.Model) -> str:
    """A digest of the standardisation constants, which Keras bakes into the traced graph.

    Normalization layers built with a given mean and variance hold them as constants, not
    variables: a program compiled for one training set must not serve another.
    """
    digest = hashlib.sha256()
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            for array in (layer.mean, layer.variance):
                digest.update(np.asarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _architecture(model: keras.Model) -> tuple:
    """What a compiled program depends on besides tensors: layer types and settings, shapes, optimizer."""
    layers = tuple((layer.__class__.__name__,
                    repr(sorted((k, v) for k, v in layer.get_config().items() if k not in _IGNORED)))
                   for layer in model.layers)
    optimizer = model.optimizer.get_config()
    return (layers, _constants_digest(model), tuple(tuple(v.shape) for v in model.trainable_variables),
            tuple(tuple(v.shape) for v in model.non_trainable_variables),
            model.optimizer.__class__.__name__, repr(sorted((k, v) for k, v in optimizer.items()
                                           if k not in ("name", "learning_rate"))))


def _program(model: keras.Model, make_template, batch_size: int, jit_compile: bool) -> _Program:
    key = (_architecture(model), batch_size, jit_compile)
    with _PROGRAMS_LOCK:
        if key not in _PROGRAMS:
            template = make_template()
            if _architecture(template) != key[0]:
                raise ValueError("make_template() must build a model of the same architecture as the one trained")
            optimizer = template.optimizer.__class__.from_config(model.optimizer.get_config())
            _PROGRAMS[key] = _Program(template, optimizer, batch_size, jit_compile)
        program = _PROGRAMS[key]
    regularised = [v.regularizer is not None for v in model.trainable_variables]
    if any(regularised) and regularised != program.regularised:
        raise ValueError("the fast engine needs L2 on the same kernels as the template, or on none")
    return program


def _copy(sources, targets) -> None:
    for source, target in zip(sources, targets):
        target.assign(source.value)


def fit(model: keras.Model, make_template, x_train, y_train_onehot, x_test, y_test_onehot, *, batch_size: int,
        orders: np.ndarray, callbacks=(), jit_compile: bool = True, verbose: int = 0):
    """Train `model` (compiled, with a Keras optimizer) in place; returns (history, diverged).

    `orders` (num_epochs, N) gives each epoch's row order. `make_template()` builds a
    fresh model of the same architecture (any weights). The
    history has the keys and lengths of a `fit` with mnistlab's metric callbacks. User
    callbacks get on_train_begin, on_epoch_begin, on_epoch_end(epoch, logs) and
    on_train_end, and may set `model.stop_training`; batch-level hooks are not called.
    """
    program = _program(model, make_template, batch_size, jit_compile)
    with program.lock:
        return _fit(program, model, x_train, y_train_onehot, x_test, y_test_onehot, batch_size, orders,
                    list(callbacks), verbose)


def _fit(program, model, x_train, y_train_onehot, x_test, y_test_onehot, batch_size, orders, callbacks, verbose):
    num_epochs = len(orders)
    model.optimizer.build(model.trainable_variables)
    model_variables = (list(model.trainable_variables) + list(model.non_trainable_variables)
                       + list(model.optimizer.variables))
    template_variables = program.variables()
    if [tuple(v.shape) for v in model_variables] != [tuple(v.shape) for v in template_variables]:
        raise ValueError("the model's and the template's variables do not correspond")
    _copy(model_variables, template_variables)
    l2 = tf.constant(_penalty_coefficient(model), tf.float32)
    x_train = tf.constant(np.asarray(x_train, np.float32))
    x_test = tf.constant(np.asarray(x_test, np.float32))
    y_train = tf.constant(np.asarray(y_train_onehot, np.float32))
    y_test = tf.constant(np.asarray(y_test_onehot, np.float32))
    hidden = range(1, len(program.kernels) + 1)

    def measure():
        values = program.measure(l2, x_train, y_train, x_test, y_test)
        return {key: value.numpy() for key, value in values.items()}

    history = {key: [] for key in ("accuracy", "loss", "val_accuracy", "val_loss", "zero_one_error",
                                   "val_zero_one_error")}
    start = measure()
    for k in hidden:
        history[f"speed_hidden_{k}"] = [float(start["speed"][k - 1])]
        history[f"weight_change_hidden_{k}"] = [0.0]

    for callback in callbacks:
        callback.set_model(model)
        callback.set_params({"epochs": num_epochs, "steps": -(-len(x_train) // batch_size), "verbose": verbose})
        callback.on_train_begin({})
    model.stop_training = False
    diverged = False
    for epoch in range(num_epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch, {})
        loss, accuracy, changes = program.train_epoch(l2, x_train, y_train, tf.constant(orders[epoch]))
        values = measure()
        test_size = np.float32(len(x_test))  # Keras' accuracy metric divides in float32
        logs = {"accuracy": float(accuracy), "loss": float(loss),
                "val_accuracy": float((test_size - values["wrong_test"]) / test_size),
                "val_loss": float(values["val_loss"]), "zero_one_error": float(values["wrong_train"]) / len(x_train),
                "val_zero_one_error": float(values["wrong_test"]) / len(x_test)}
        for k in hidden:
            logs[f"speed_hidden_{k}"] = float(values["speed"][k - 1])
            logs[f"weight_change_hidden_{k}"] = float(changes[k - 1])
        for key, value in logs.items():
            history[key].append(value)
        diverged = not math.isfinite(logs["loss"])
        if verbose:
            print(f"Epoch {epoch + 1}/{num_epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if callbacks:  # callbacks see (and may change) the model as it stands
            _copy(template_variables, model_variables)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            _copy(model_variables, template_variables)
        if diverged or model.stop_training:
            break
    _copy(template_variables, model_variables)
    for callback in callbacks:
        callback.on_train_end({})
    # Like `fit`'s History: a key only once an epoch has logged it (0 epochs: speed at start only).
    return {key: values for key, values in history.items() if values}, diverged
