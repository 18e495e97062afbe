"""The one frozen dataclass that holds every hyperparameter of a run (no TensorFlow import)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .data import SOURCES, check_per_class

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "momentum", "adam")
INITS = ("glorot", "nielsen")
L2_CONVENTIONS = ("nielsen", "keras")
ACTIVATIONS = ("sigmoid", "tanh", "relu")
L2_LAYERS = ("all", "hidden")
MAX_SEED = 2**32 - 1  # NumPy's legacy seeding, which keras.utils.set_random_seed uses, takes 32 bits


@dataclasses.dataclass(frozen=True)
class Config:
    """Every hyperparameter of one run; defaults are the corrected course settings (Nielsen ch. 3)."""

    model: str = "mlp"  # "mlp" (sigmoid net) or "cnn" (the original notebook's CNN with augmentation)
    hidden_layers: int = 1  # MLP hidden layers; 0 is softmax regression
    units: int = 30  # units per hidden layer
    activation: str = "sigmoid"  # hidden-layer activation
    l2_lambda: float = 5.0  # L2 strength lambda, read according to l2_convention
    l2_convention: str = "nielsen"  # "nielsen": C0 + lambda/(2n) sum w^2; "keras": l2(lambda) literally
    l2_layers: str = "all"  # "all" kernels (Nielsen's network2) or "hidden" only (the original left the output free)
    optimizer: str = "sgd"  # "sgd", "momentum" (0.9) or "adam"
    learning_rate: float = 0.1  # eta
    batch_size: int = 10  # mini-batch size
    epochs: int = 30  # passes over the training set
    per_class: int = 100  # images per digit in each split: training, validation and test
    init: str = "glorot"  # "glorot" (Keras default) or "nielsen" (N(0, 1/n_in) weights, N(0, 1) biases)
    source: str = "bundled"  # "bundled" (shipped, offline), "keras" (official splits) or "auto"
    seed: int = 0  # seeds initialisation, shuffling, dropout and augmentation

    def __post_init__(self):
        def whole(name, minimum, maximum=None):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum
                    or (maximum is not None and value > maximum)):
                allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
                raise ValueError(f"{name} must be a whole number {allowed}, got {value!r}")
            object.__setattr__(self, name, int(value))  # NumPy integers would not serialise as JSON

        def number(name, positive):
            value = getattr(self, name)
            ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
                  and math.isfinite(value) and (value > 0 if positive else value >= 0))
            if not ok:
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
            object.__setattr__(self, name, float(value))

        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(options)}")

        choice("model", MODELS)
        choice("activation", ACTIVATIONS)
        choice("l2_convention", L2_CONVENTIONS)
        choice("optimizer", OPTIMIZERS)
        choice("init", INITS)
        choice("source", SOURCES)
        choice("l2_layers", L2_LAYERS)
        whole("hidden_layers", 0)
        whole("units", 1)
        whole("batch_size", 1)
        whole("epochs", 0)
        whole("per_class", 1)
        whole("seed", 0, MAX_SEED)
        number("l2_lambda", positive=False)
        number("learning_rate", positive=True)
        check_per_class(self.per_class, self.source)  # constants only: no data file is opened

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The original notebook's six MLP configurations: (hidden layers, lambda).
STUDY_GRID = [(hidden_layers, l2_lambda) for hidden_layers in (1, 2, 3) for l2_lambda in (0.0, 5.0)]
