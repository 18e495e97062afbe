"""mnistlab: data, models, metric callbacks and experiments for the MNIST course book."""

import os

# TensorFlow's C++ start-up chatter would land in every notebook output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from .callbacks import DivergenceGuard, LearningSpeed, ZeroOneError, zero_one_error  # noqa: E402
from .data import CourseData, load_course_data, one_hot, standardisation_stats  # noqa: E402
from .experiment import Config, Result, build_model, set_seed, study, train  # noqa: E402
from .models import build_cnn, build_mlp, count_trainable, hidden_layers_of, l2_coefficient, make_optimizer  # noqa: E402
from . import theory  # noqa: E402  (numerical checks of the book's derivations)

__version__ = "0.1.0"

__all__ = [
    "Config", "CourseData", "DivergenceGuard", "LearningSpeed", "Result", "ZeroOneError",
    "build_cnn", "build_mlp", "build_model", "count_trainable", "hidden_layers_of", "l2_coefficient",
    "load_course_data", "make_optimizer", "one_hot", "set_seed", "standardisation_stats", "study", "train",
    "theory", "zero_one_error",
]
