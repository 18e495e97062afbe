"""The one frozen dataclass that holds every hyperparameter of a run (no TensorFlow import)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .data import SOURCES, max_per_class

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "momentum", "adam")
INITS = ("glorot", "nielsen")
L2_CONVENTIONS = ("nielsen", "keras")
ACTIVATIONS = ("sigmoid", "tanh", "relu")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every hyperparameter of one run; defaults are the corrected course settings (Nielsen ch. 3)."""

    model: str = "mlp"  # "mlp" (sigmoid net) or "cnn" (the original notebook's CNN with augmentation)
    hidden_layers: int = 1  # MLP hidden layers; 0 is softmax regression
    units: int = 30  # units per hidden layer
    activation: str = "sigmoid"  # hidden-layer activation
    l2_lambda: float = 5.0  # L2 strength lambda, read according to l2_convention
    l2_convention: str = "nielsen"  # "nielsen": C0 + lambda/(2n) sum w^2; "keras": l2(lambda) literally
    optimizer: str = "sgd"  # "sgd", "momentum" (0.9) or "adam"
    learning_rate: float = 0.1  # eta
    batch_size: int = 10  # mini-batch size
    epochs: int = 30  # passes over the training set
    per_class: int = 100  # training (and test) images per digit
    init: str = "glorot"  # "glorot" (Keras default) or "nielsen" (N(0, 1/n_in) weights, N(0, 1) biases)
    source: str = "bundled"  # "bundled" (shipped, offline), "keras" (official splits) or "auto"
    seed: int = 0  # seeds initialisation, shuffling, dropout and augmentation

    def __post_init__(self):
        def whole(name, minimum):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")

        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(options)}")

        choice("model", MODELS)
        choice("activation", ACTIVATIONS)
        choice("l2_convention", L2_CONVENTIONS)
        choice("optimizer", OPTIMIZERS)
        choice("init", INITS)
        choice("source", SOURCES)
        whole("hidden_layers", 0)
        whole("units", 1)
        whole("batch_size", 1)
        whole("epochs", 0)
        whole("per_class", 1)
        whole("seed", 0)
        if not (isinstance(self.l2_lambda, (int, float)) and math.isfinite(self.l2_lambda) and self.l2_lambda >= 0):
            raise ValueError(f"l2_lambda must be a finite number >= 0, got {self.l2_lambda!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        limit = max_per_class(self.source)
        if self.per_class > limit:
            raise ValueError(f"per_class must be between 1 and {limit} for source {self.source!r}, "
                             f"got {self.per_class}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The original notebook's six MLP configurations: (hidden layers, lambda).
STUDY_GRID = [(hidden_layers, l2_lambda) for hidden_layers in (1, 2, 3) for l2_lambda in (0.0, 5.0)]
