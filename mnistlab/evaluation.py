"""Final evaluation of a trained or saved model: accuracy with its 95% binomial interval, on any set or the whole official test set."""

from __future__ import annotations

import math
import statistics

import numpy as np
import tensorflow as tf

from .callbacks import split_sums
from .data import NUM_CLASSES, one_hot


def binomial_interval(accuracy: float, count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for an accuracy measured on `count` independent images.

    At 0.85 on 1,000 images the 95% interval is about 0.827 to 0.871, plus or minus 2.2 points:
    the uncertainty every reported test accuracy of the course carries.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a whole number >= 1, got {count!r}")
    if not (isinstance(accuracy, (int, float, np.floating)) and 0.0 <= accuracy <= 1.0):
        raise ValueError(f"accuracy must be a number between 0 and 1, got {accuracy!r}")
    if not (isinstance(confidence, (float, np.floating)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    n, p = float(count), float(accuracy)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict:
    """`model`'s accuracy, C0 and loss on a whole set, as the history's test keys measure them.

    Returns accuracy (exact fraction), correct, count, interval (95% Wilson, [low, high]),
    cross_entropy (C0) and loss (C0 plus the model's L2 penalty). Inference mode.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or len(images) == 0 or len(labels) != len(images):
        raise ValueError(f"need images (N, 28, 28) with N >= 1 and one label each, got {images.shape} and "
                         f"{labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must be integers in 0..{NUM_CLASSES - 1}")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise ValueError("images have NaN or infinite pixels")
    pixels = tf.constant(images.astype(np.float32))
    targets = tf.constant(one_hot(labels))

    @tf.function(autograph=False)
    def measure():
        wrong, cross_entropy = split_sums(model, pixels, targets)
        penalties = [tf.cast(tf.reduce_sum(loss), tf.float32) for loss in model.losses]
        return wrong, cross_entropy, tf.reduce_sum(tf.stack([cross_entropy] + penalties))

    wrong, cross_entropy, loss = measure()
    count = len(labels)
    correct = count - int(wrong)
    accuracy = correct / count
    return {"accuracy": accuracy, "correct": correct, "count": count,
            "interval": list(binomial_interval(accuracy, count)),
            "cross_entropy": float(cross_entropy), "loss": float(loss)}


def evaluate_full_test(model, source: str = "bundled") -> dict:
    """`evaluate` on the whole 10,000-image official MNIST test set (bundled, or Keras' copy)."""
    from . import data

    return evaluate(model, *data.load_full_test(source))
