"""Model builders: the course's sigmoid MLPs and the original notebook's CNN, taking raw pixels."""

from __future__ import annotations

import math

import keras
import numpy as np

from .config import ACTIVATIONS, INITS, L2_CONVENTIONS, L2_LAYERS, OPTIMIZERS
from .data import IMAGE_SHAPE, NUM_CLASSES, standardisation_stats


def l2_coefficient(l2_lambda: float, num_train: int, convention: str = "nielsen") -> float:
    """The factor Keras' `l2(c)` takes, so the penalty is c * sum w^2.

    nielsen: C = C0 + lambda/(2n) sum w^2, so c = lambda / (2 n).
    keras:   c = lambda as written (the original notebook's `l2(5)`).
    """
    if convention not in L2_CONVENTIONS:
        raise ValueError(f"unknown l2 convention {convention!r}; choose one of {', '.join(L2_CONVENTIONS)}")
    if l2_lambda < 0:
        raise ValueError(f"l2_lambda must be >= 0, got {l2_lambda}")
    if convention == "nielsen":
        if num_train < 1:
            raise ValueError(f"num_train must be >= 1, got {num_train}")
        return l2_lambda / (2.0 * num_train)
    return float(l2_lambda)


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """sgd (plain), momentum (SGD with momentum 0.9) or adam, at `learning_rate`."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def _initializers(init: str, fan_in: int, seed: int):
    if init == "glorot":
        return keras.initializers.GlorotUniform(seed=seed), keras.initializers.Zeros()
    if init == "nielsen":
        # Nielsen ch. 3: weights N(0, 1/n_in), biases N(0, 1).
        return (keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(fan_in), seed=seed),
                keras.initializers.RandomNormal(stddev=1.0, seed=seed + 100_000))
    raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


def _check_l2_layers(l2_layers: str) -> None:
    if l2_layers not in L2_LAYERS:
        raise ValueError(f"unknown l2_layers {l2_layers!r}; choose one of {', '.join(L2_LAYERS)}")


def build_mlp(x_train: np.ndarray, hidden_layers: int = 1, units: int = 30, activation: str = "sigmoid",
              l2: float = 0.0, init: str = "glorot", seed: int = 0, l2_layers: str = "all") -> keras.Sequential:
    """A fully connected net from raw (N, 28, 28) pixels to 10 softmax probabilities.

    Standardisation (per pixel, fitted on `x_train` only) is the first layer, so the
    model takes raw pixels; `l2` is Keras' coefficient (see `l2_coefficient`) on every
    kernel, or with `l2_layers="hidden"` on the hidden kernels only, as the original
    notebook had it. Hidden layers are named hidden_1, hidden_2, ... from the input side.
    """
    if isinstance(hidden_layers, bool) or not isinstance(hidden_layers, (int, np.integer)) or hidden_layers < 0:
        raise ValueError(f"hidden_layers must be a whole number >= 0, got {hidden_layers!r}")
    if units < 1:
        raise ValueError(f"units must be >= 1, got {units}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    _check_l2_layers(l2_layers)
    mean, variance = standardisation_stats(x_train)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Flatten(name="flatten"),
              keras.layers.Normalization(mean=mean, variance=variance, name="standardise")]
    fan_in = int(np.prod(IMAGE_SHAPE))
    for k in range(1, hidden_layers + 1):
        kernel_init, bias_init = _initializers(init, fan_in, seed + k)
        layers.append(keras.layers.Dense(units, activation=activation, kernel_initializer=kernel_init,
                                         bias_initializer=bias_init, kernel_regularizer=regularizer,
                                         name=f"hidden_{k}"))
        fan_in = units
    kernel_init, bias_init = _initializers(init, fan_in, seed)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax", kernel_initializer=kernel_init,
                                     bias_initializer=bias_init,
                                     kernel_regularizer=regularizer if l2_layers == "all" else None,
                                     name="output"))
    return keras.Sequential(layers, name=f"mlp_{hidden_layers}x{units}")


def build_cnn(x_train: np.ndarray, l2: float = 0.0, seed: int = 0, augment: bool = True,
              l2_layers: str = "all") -> keras.Sequential:
    """The original notebook's CNN (619,786 trainable parameters) with augmentation as layers.

    Augmentation (shifts up to 3 px, rotations up to 3 degrees, the original
    ImageDataGenerator settings) acts on raw pixels and only in training; then one
    mean and spread over all training pixels standardise, since a per-pixel
    standardisation would not follow a shifted digit.
    """
    _check_l2_layers(l2_layers)
    pixels = np.asarray(x_train, dtype=np.float64)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    layers = [keras.Input(shape=IMAGE_SHAPE), keras.layers.Reshape(IMAGE_SHAPE + (1,), name="channel")]
    if augment:
        layers += [
            keras.layers.RandomTranslation(3 / 28, 3 / 28, fill_mode="constant", seed=seed + 1, name="shift"),
            keras.layers.RandomRotation(3 / 360, fill_mode="constant", seed=seed + 2, name="rotate"),
        ]
    layers.append(keras.layers.Normalization(axis=None, mean=float(pixels.mean()),
                                             variance=float(pixels.var()), name="standardise"))
    conv_seed = seed + 10
    for index, filters in enumerate((32, 64, 128)):
        layers.append(keras.layers.Conv2D(filters, 3, padding="same", kernel_regularizer=regularizer,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=conv_seed + index),
                                          name=f"conv_{index + 1}"))
        layers.append(keras.layers.LeakyReLU(negative_slope=0.1))
        pool = keras.layers.MaxPooling2D(2, padding="same")
        dropout = keras.layers.Dropout(0.2, seed=seed + 20 + index)
        # The original's third block drops out before pooling; kept as it was.
        layers += [dropout, pool] if index == 2 else [pool, dropout]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(256, kernel_regularizer=regularizer, name="dense",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 30)),
        keras.layers.LeakyReLU(negative_slope=0.1),
        keras.layers.Dense(NUM_CLASSES, activation="softmax", name="output",
                           kernel_regularizer=regularizer if l2_layers == "all" else None,
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 31)),
    ]
    return keras.Sequential(layers, name="cnn")


def hidden_layers_of(model: keras.Model) -> list:
    """The model's hidden Dense layers, input side first (hidden_1, hidden_2, ...)."""
    return [layer for layer in model.layers if layer.name.startswith("hidden_")]


def count_trainable(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
