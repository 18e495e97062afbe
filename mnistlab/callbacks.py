"""EpochMetrics: every per-epoch metric of the course on whole sets, in one compiled call, written into `logs`."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .data import one_hot
from .models import hidden_layers_of

# Prefixes of the three splits in `logs` and History, as Keras names its validation keys.
SPLITS = {"train": "", "val": "val_", "test": "test_"}
# Images whose cross-entropies are summed together; the C0 of a larger set adds these sums in order.
# It fixes the rounding of every C0 the course reports: keep it.
CHUNK = 1000


def zero_one_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose most probable class is not the label; a row with NaN or infinity counts as wrong."""
    probabilities = np.asarray(probabilities)
    wrong = (np.argmax(probabilities, axis=1) != np.asarray(labels)) | ~np.isfinite(probabilities).all(axis=1)
    return float(np.mean(wrong))


def _wrong(y_onehot, probabilities):
    # A prediction that is not finite is never right (argmax of NaN would pick class 0).
    missed = tf.argmax(probabilities, axis=1) != tf.argmax(y_onehot, axis=1)
    broken = tf.logical_not(tf.reduce_all(tf.math.is_finite(probabilities), axis=1))
    return tf.reduce_sum(tf.cast(tf.logical_or(missed, broken), tf.int32))


def split_sums(model, images, y_onehot, pass_size: int = CHUNK):
    """Wrong predictions and mean cross-entropy C0 of `model` on a whole set (inference mode).

    Forward passes of `pass_size` images are independent, so TensorFlow can run several at
    once on different cores. The cross-entropies are summed per `CHUNK` images whatever
    `pass_size` is, and an image's probabilities do not depend on the pass it is in (checked
    for the course's models with passes of 2 to 1,000 images; one-image passes use other
    kernels, which round differently), so `pass_size` changes no bit of the results. Call it
    inside a tf.function: Keras' loss then works from the softmax's logits, as `fit` does.
    """
    count = images.shape[0]
    wrong, cross_entropy = tf.constant(0), tf.constant(0.0)
    for start in range(0, count, CHUNK):
        stop = min(start + CHUNK, count)
        losses = []
        for begin in range(start, stop, pass_size):
            end = min(begin + pass_size, stop)
            probabilities = model(images[begin:end], training=False)
            targets = y_onehot[begin:end]
            wrong += _wrong(targets, probabilities)
            losses.append(keras.losses.categorical_crossentropy(targets, probabilities))
        cross_entropy += tf.reduce_sum(losses[0] if len(losses) == 1 else tf.concat(losses, axis=0))
    # Summed, then divided, as Keras' mean-over-batch reduction does.
    return wrong, cross_entropy / count


class EpochMetrics(keras.callbacks.Callback):
    """Every per-epoch metric of the course, on whole sets, at initialisation and after every epoch.

    One compiled call measures the model as it stands (inference mode: no dropout, no
    augmentation) on each split given and writes into `logs`, so that History, CSVLogger and
    any later callback see the values. Keys, with no prefix for the training set, `val_` for
    validation and `test_` for test:

    - `<p>zero_one_error`: fraction of the split's images misclassified (exact count / N);
    - `<p>cross_entropy`: C0, the mean categorical cross-entropy, without the penalty;
    - `val_loss`, `test_loss`: C0 + penalty, and `val_accuracy`, `test_accuracy` (float32,
      as Keras' evaluate computes them); the training split's `loss` and `accuracy` stay
      Keras' own, running means over the epoch's mini-batches while the weights move;
    - `penalty`: the regularisation term sum(model.losses) (0 without L2);
    - for each hidden layer k (layers named `hidden_<k>`, input side first):
      `speed_hidden_<k>`, Nielsen's ||dC0/db^k|| on the whole training set;
      `weight_change_hidden_<k>`, the mean over the kernel's entries of
      |W_new - W_old| / |W_old| during the epoch (entries with W_old = 0 left out);
      `norm_change_hidden_<k>`, ||W_new - W_old|| / ||W_old|| during the epoch.

    `initial` holds the values at initialisation, measured in `on_train_begin` (every key
    above except the epoch's changes, and with `loss` and `accuracy` of the training split
    measured on the whole set, since no mini-batch has run). A NaN or infinite training loss
    stops training after the epoch (as Keras' TerminateOnNaN, silently) and sets `diverged`.
    Labels are integers 0..9; the model maps images to class probabilities.

    `pass_size`: images per forward pass of the validation and test splits (and of the training
    split, for a model without hidden Dense layers); see `split_sums`. The measurement is
    compiled once per model: a second `fit` of the same model reuses it.
    """

    def __init__(self, train: tuple, val: tuple | None = None, test: tuple | None = None, pass_size: int = CHUNK):
        super().__init__()
        given = {"train": train, "val": val, "test": test}  # (images, integer labels) each
        self.splits = {name: pair for name, pair in given.items() if pair is not None}
        if isinstance(pass_size, bool) or not isinstance(pass_size, (int, np.integer)) or pass_size < 1:
            raise ValueError(f"pass_size must be a whole number >= 1, got {pass_size!r}")
        self.pass_size = int(pass_size)  # images per forward pass (see split_sums)
        self.initial: dict[str, float] = {}
        self.diverged = False
        self.diverged_epoch: int | None = None
        self._measure = None
        self._measured_model = None

    def on_train_begin(self, logs=None):
        self.diverged, self.diverged_epoch = False, None
        if "train" not in self.splits:
            raise ValueError("EpochMetrics needs the training split")
        if self._measure is None or self._measured_model is not self.model:
            self._compile_measurement()
        else:
            # The same model trained again (ml.train with model=): the compiled measurement still
            # holds; the kernels' reference point is their value now.
            for kernel, previous in zip(self._kernels, self._previous):
                previous.assign(kernel.value)
        values = self._values(self._measure())
        # No epoch has passed: no change yet, and the training loss and accuracy are the whole set's.
        self.initial = {key: value for key, value in values.items()
                        if not key.startswith(("weight_change_", "norm_change_"))}

    def _compile_measurement(self):
        self._tensors = {}
        for name, (images, labels) in self.splits.items():
            # float32 once here (exact for uint8 pixels), not a cast in every measurement.
            self._tensors[name] = (tf.constant(np.asarray(images, dtype=np.float32)), tf.constant(one_hot(labels)))
        hidden = hidden_layers_of(self.model)
        self._kernels = [layer.kernel for layer in hidden]
        self._biases = [layer.bias for layer in hidden]
        # The kernels as they were at the last measurement, kept outside the model.
        self._previous = [tf.Variable(tf.identity(kernel.value), trainable=False) for kernel in self._kernels]
        self._keys = []  # what each entry of the measured vector is, filled in while tracing
        self._measure = tf.function(self._measure_all, autograph=False)
        self._measured_model = self.model

    def on_epoch_end(self, epoch, logs=None):
        values = self._values(self._measure())
        del values["loss"], values["accuracy"]  # the training split's are Keras' running means
        if logs is not None:
            logs.update(values)
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.diverged = True
                self.diverged_epoch = epoch
                self.model.stop_training = True

    def _measure_all(self):
        """Every value, as one float64 vector (one transfer to Python); `self._keys` names the entries."""
        penalties = [tf.cast(tf.reduce_sum(loss), tf.float32) for loss in self.model.losses]
        measured = {"penalty": None}  # listed first, computed last
        for name, (images, y_onehot) in self._tensors.items():
            prefix = SPLITS[name]
            if name == "train" and self._biases:
                # Nielsen's speed: the bias gradient of C0 on the whole training set, from the same pass
                # (an MLP, whose whole-set pass is small).
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    for bias in self._biases:
                        tape.watch(bias.value)
                    probabilities = self.model(images, training=False)
                    # Summed, then divided, as Keras' mean-over-batch reduction does.
                    cross_entropy = (tf.reduce_sum(keras.losses.categorical_crossentropy(y_onehot, probabilities))
                                     / images.shape[0])
                gradients = tape.gradient(cross_entropy, [bias.value for bias in self._biases])
                for k, gradient in enumerate(gradients, start=1):
                    measured[f"speed_hidden_{k}"] = tf.norm(gradient)
                wrong = _wrong(y_onehot, probabilities)
            else:
                wrong, cross_entropy = split_sums(self.model, images, y_onehot, self.pass_size)
            measured[f"{prefix}wrong"] = wrong
            measured[f"{prefix}cross_entropy"] = cross_entropy
            # As Keras' compute_loss adds them: the data loss and each penalty, summed at once.
            measured[f"{prefix}loss"] = tf.reduce_sum(tf.stack([cross_entropy] + penalties))
        for k, (kernel, previous) in enumerate(zip(self._kernels, self._previous), start=1):
            new, old = kernel.value, previous.value()
            moved = tf.cast(old != 0, tf.float32)
            relative = tf.abs(new - old) / tf.where(old != 0, tf.abs(old), 1.0)
            measured[f"weight_change_hidden_{k}"] = (tf.reduce_sum(relative * moved)
                                                     / tf.maximum(tf.reduce_sum(moved), 1.0))
            size = tf.norm(old)
            measured[f"norm_change_hidden_{k}"] = tf.where(size > 0, tf.norm(new - old) / tf.where(size > 0, size, 1.0),
                                                           0.0)
            previous.assign(new)
        # One reduction, as Keras sums its losses: Grappler re-associated an add_n of the CNN's five
        # penalties differently from one process to the next (1 ulp apart).
        measured["penalty"] = tf.reduce_sum(tf.stack(penalties)) if penalties else tf.constant(0.0)
        self._keys = list(measured)
        # float64 holds every float32 value and every count exactly.
        return tf.stack([tf.cast(value, tf.float64) for value in measured.values()])

    def _values(self, measured) -> dict:
        measured = dict(zip(self._keys, measured.numpy().tolist()))
        values = {"penalty": measured["penalty"]}
        for name in self._tensors:
            prefix, count = SPLITS[name], int(self._tensors[name][0].shape[0])
            wrong = int(measured[f"{prefix}wrong"])
            values[f"{prefix}zero_one_error"] = wrong / count
            values[f"{prefix}cross_entropy"] = measured[f"{prefix}cross_entropy"]
            values[f"{prefix}loss"] = measured[f"{prefix}loss"]
            # Keras' accuracy metric divides in float32.
            values[f"{prefix}accuracy"] = float((np.float32(count) - np.float32(wrong)) / np.float32(count))
        values.update({key: value for key, value in measured.items() if key.startswith("speed_hidden_")})
        for k in range(1, len(self._kernels) + 1):
            values[f"weight_change_hidden_{k}"] = measured[f"weight_change_hidden_{k}"]
            values[f"norm_change_hidden_{k}"] = measured[f"norm_change_hidden_{k}"]
        return values
