"""Diagnostics as Keras callbacks that write into `logs`: zero-one error, learning speed, divergence."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .data import one_hot
from .models import hidden_layers_of


def zero_one_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose most probable class is not the label."""
    return float(np.mean(np.argmax(probabilities, axis=1) != np.asarray(labels)))


class ZeroOneError(keras.callbacks.Callback):
    """Zero-one error of the model as it stands at the end of each epoch (inference mode).

    Keras' `accuracy` is averaged over the epoch's mini-batches while the weights move
    (and with dropout on); this is the error of the final weights on the whole set.
    Logs `zero_one_error` (training set) and `val_zero_one_error` (held-out set).
    """

    def __init__(self, x_train, y_train, x_test, y_test):
        super().__init__()
        self.sets = {"zero_one_error": (x_train, np.asarray(y_train)),
                     "val_zero_one_error": (x_test, np.asarray(y_test))}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for key, (x, labels) in self.sets.items():
            logs[key] = zero_one_error(self.model.predict_on_batch(x), labels)


class LearningSpeed(keras.callbacks.Callback):
    """How fast each hidden layer learns, two measures, at initialisation and after every epoch.

    speed_hidden_<k>: Nielsen's ||dC/db^k||, the norm of the gradient of the unregularised
        mean cross-entropy over the whole training set with respect to layer k's biases.
    weight_change_hidden_<k>: the mean over layer k's kernel entries of |W_new - W_old| / |W_old|
        during the epoch (entries with W_old = 0 left out); 0 at initialisation.
    `self.history` holds epochs + 1 values per key; `logs` gets each epoch's value.
    """

    def __init__(self, x_train, y_train):
        super().__init__()
        self.x_train = np.asarray(x_train)
        self.y_onehot = one_hot(y_train)
        self.history: dict[str, list[float]] = {}

    def _bias_gradient_norms(self) -> list[float]:
        return [float(v) for v in self._norms(self.x_train, self.y_onehot)]

    def _kernels(self) -> list[np.ndarray]:
        return [layer.kernel.numpy().copy() for layer in self.hidden]

    def on_train_begin(self, logs=None):
        self.hidden = hidden_layers_of(self.model)
        biases = [layer.bias for layer in self.hidden]
        model = self.model

        @tf.function(reduce_retracing=True)
        def norms(x, y):
            with tf.GradientTape() as tape:
                probabilities = model(x, training=False)
                loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, probabilities))
            return [tf.norm(g) for g in tape.gradient(loss, biases)]

        self._norms = norms
        self.history = {}
        self._previous = self._kernels()
        for k, speed in enumerate(self._bias_gradient_norms() if self.hidden else [], start=1):
            self.history[f"speed_hidden_{k}"] = [speed]
            self.history[f"weight_change_hidden_{k}"] = [0.0]

    def on_epoch_end(self, epoch, logs=None):
        if not self.hidden:
            return
        current = self._kernels()
        values = {}
        for k, (speed, old, new) in enumerate(zip(self._bias_gradient_norms(), self._previous, current), start=1):
            moved = old != 0
            change = float(np.mean(np.abs(new[moved] - old[moved]) / np.abs(old[moved]))) if moved.any() else 0.0
            values[f"speed_hidden_{k}"] = speed
            values[f"weight_change_hidden_{k}"] = change
        self._previous = current
        for key, value in values.items():
            self.history[key].append(value)
            if logs is not None:
                logs[key] = value


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training as soon as the loss is NaN or infinite and remembers that it did."""

    def __init__(self):
        super().__init__()
        self.diverged = False
        self.epoch = None

    def on_train_begin(self, logs=None):
        self.diverged = False
        self.epoch = None

    def _check(self, logs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            self.diverged = True
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)
        if self.diverged and self.epoch is None:
            self.epoch = epoch
