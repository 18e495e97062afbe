"""mnistlab: data, models, metric callbacks and experiments for the MNIST course book."""

import os
import sys

# Level 3: TensorFlow's graph optimiser logs a harmless, timestamped "remapper failed" error
# for the CNN, which would land in notebook outputs; real failures still raise in Python.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One thread per TensorFlow op (two ops run at a time, the inter-op default on 2 cores): the
# course's batch-10 convolutions are too small to split, and splitting them oversubscribes the
# cores. Measured on 2 cores: a CNN epoch 0.45 s against 0.55-0.64 s, the MLP study unchanged.
# TensorFlow reads this when it first runs an op; set the variable yourself to choose otherwise.
# Results are bit-identical run to run for one setting, not across settings.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")


# The oldest TensorFlow mnistlab runs on (tested in CI, with Keras 3.10). TensorFlow is not a declared
# dependency (see pyproject.toml), so its presence and release are checked here.
OLDEST_TENSORFLOW = (2, 19)
_INSTALL_TENSORFLOW = ("pip install 'tensorflow-cpu>=2.19' (or 'tensorflow>=2.19' where the CPU build does not exist); "
                       "from a checkout, `python3 tasks.py setup` installs everything")


def _import_tensorflow_quietly():
    # TensorFlow's C++ start-up notices (timestamped, written before its log level is read) would
    # land in every notebook output, breaking nbval, and bury the CLI's one-line errors.
    if sys.modules.get("tensorflow") is None:
        try:
            sys.stderr.flush()
            saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError):
            saved = devnull = None
        if saved is not None:
            os.dup2(devnull, 2)
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except ModuleNotFoundError as error:
            if error.name not in ("tensorflow", "keras"):
                raise
            raise ImportError(f"mnistlab needs TensorFlow {'.'.join(map(str, OLDEST_TENSORFLOW))} or newer, "
                              f"and {error.name} is not installed: {_INSTALL_TENSORFLOW}") from None
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)
    version = sys.modules["tensorflow"].__version__
    if tuple(int(part) for part in version.split(".")[:2] if part.isdigit()) < OLDEST_TENSORFLOW:
        raise ImportError(f"mnistlab needs TensorFlow {'.'.join(map(str, OLDEST_TENSORFLOW))} or newer, "
                          f"this is {version}: {_INSTALL_TENSORFLOW}")


try:
    _import_tensorflow_quietly()
except KeyboardInterrupt:
    # Ctrl-C while `python -m mnistlab ...` loads TensorFlow (its module is still being located, so
    # argv[0] is "-m"): one line and exit 130 as the command line gives later, not a traceback.
    if sys.argv[:1] == ["-m"]:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise

from .callbacks import EpochMetrics, zero_one_error  # noqa: E402
from .data import CourseData, load_course_data, load_full_test, one_hot, standardisation_stats  # noqa: E402
from .config import STUDY_GRID, Config  # noqa: E402
from .evaluation import binomial_interval, evaluate, evaluate_full_test  # noqa: E402
from .experiment import Result, build_model, check_data, set_seed, study, train, train_grid  # noqa: E402
from . import diagnostics  # noqa: E402
from .models import build_cnn, build_mlp, count_trainable, hidden_layers_of, l2_coefficient, make_optimizer  # noqa: E402
from . import theory  # noqa: E402  (numerical checks of the book's derivations)
from .notebook import glue  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Config", "CourseData", "EpochMetrics", "STUDY_GRID", "Result",
    "binomial_interval", "build_cnn", "build_mlp", "build_model", "check_data", "count_trainable", "evaluate",
    "evaluate_full_test", "hidden_layers_of", "l2_coefficient", "load_course_data", "load_full_test", "make_optimizer", "one_hot",
    "set_seed", "standardisation_stats", "study", "train", "train_grid",
    "diagnostics", "glue", "plots", "theory", "zero_one_error",
]


def __getattr__(name):
    # `ml.plots` is imported on first use, so that importing mnistlab does not import pyplot.
    if name == "plots":
        import importlib

        return importlib.import_module(".plots", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
