"""Training: one frozen config, one Keras `fit` per run, results that carry their config."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import time

import keras
import numpy as np
import tensorflow as tf

from .callbacks import SPLITS, EpochMetrics
from .config import STUDY_GRID, Config
from .data import IMAGE_SHAPE, NUM_CLASSES, CourseData, load_course_data, one_hot
from .models import build_cnn, build_mlp, l2_coefficient, make_optimizer


@dataclasses.dataclass
class Result:
    """What one run produced: its config, per-epoch history, values at initialisation, final metrics.

    `history` is Keras' History: one value per epoch run (NaN and infinity as None), including
    every key a callback wrote into `logs`. `initial` holds the values measured before the
    first step (epoch 0) for every key `EpochMetrics` measures on whole sets; `trajectory(key)`
    joins the two, epoch 0 first.
    """

    config: Config
    history: dict  # per-epoch lists, one value per epoch
    final: dict  # last value of every history list (initial values if no epoch ran) + split accuracies
    seconds: float  # wall time of building and fitting
    diverged: bool  # a NaN or infinite training loss stopped training
    initial: dict = dataclasses.field(default_factory=dict)  # values at initialisation (epoch 0)
    model: keras.Model | None = None

    def trajectory(self, key: str) -> list:
        """`key`'s values from epoch 0 (initialisation; None where a key has no value there) to the last epoch."""
        if key not in self.history and key not in self.initial:
            raise KeyError(f"no history for {key!r}; keys: {', '.join(sorted(set(self.history) | set(self.initial)))}")
        return [self.initial.get(key)] + list(self.history.get(key, []))

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "initial": self.initial, "history": self.history,
                "final": self.final, "seconds": self.seconds, "diverged": self.diverged}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's kernels deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Mini-batches in one pass over `num_train` images (the last one may be smaller)."""
    return -(-num_train // batch_size)


def build_model(config: Config, data: CourseData) -> keras.Model:
    """The compiled model `config` describes, standardised on `data.x_train`.

    Compiled to run a whole epoch of mini-batch steps per call (`steps_per_execution`),
    without XLA (`jit_compile_pays`).
    """
    model = _architecture(config, data)
    # The metric as an object, so its variables exist before `fit` traces its step: a variable
    # created while tracing makes TensorFlow trace the step twice.
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate),
                  loss="categorical_crossentropy", metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                  steps_per_execution=steps_per_epoch(len(data.y_train), config.batch_size),
                  jit_compile=jit_compile_pays(config))
    return model


def _architecture(config: Config, data: CourseData) -> keras.Model:
    # The uncompiled model with `config`'s initial weights (every initializer has its own seed).
    l2 = l2_coefficient(config.l2_lambda, len(data.y_train), config.l2_convention)
    if config.model == "mlp":
        return build_mlp(data.x_train, config.hidden_layers, config.units, config.activation, l2, config.init,
                         config.seed, config.l2_layers)
    return build_cnn(data.x_train, l2, config.seed, l2_layers=config.l2_layers)


def jit_compile_pays(config: Config) -> bool:
    """Whether `fit` should compile each step with XLA: no (measured, see README's Performance section).

    Keras compiles each step, not the epoch's loop, so a 30-epoch MLP run spends more on XLA's
    compilation than it saves; and Keras refuses XLA while op determinism is on (`set_seed`).
    """
    return False


def epoch_orders(num_samples: int, seed: int):
    """Row order of every epoch, made one epoch at a time: the e-th `np.random.default_rng(seed).permutation`.

    NumPy's own seeded generator, not TensorFlow's global seed, so that runs in parallel
    threads cannot disturb each other's order; generated lazily, so memory does not grow
    with the number of epochs.
    """
    generator = np.random.default_rng(seed)
    while True:
        yield generator.permutation(num_samples).astype(np.int32)


def shuffled_batches(images, labels, batch_size: int, seed: int) -> tf.data.Dataset:
    """(float32 pixels, one-hot labels) mini-batches, epoch after epoch in the orders of `epoch_orders`.

    One endless dataset for the whole run: `fit` with steps_per_epoch = ceil(N / batch_size)
    reads it straight through. Each epoch's rows are put in order and cut into mini-batches
    by NumPy when the epoch starts, so that a step only slices the next batch off (no per-step
    gather or batching function), and memory does not grow with the number of epochs.
    """
    pixels, targets = np.asarray(images, dtype=np.float32), one_hot(labels)
    count = len(pixels)
    full, rest = divmod(count, batch_size)

    def epochs():
        for order in epoch_orders(count, seed):
            x, y = pixels[order], targets[order]
            cut = full * batch_size
            yield (x[:cut].reshape((full, batch_size) + x.shape[1:]), y[:cut].reshape(full, batch_size, targets.shape[1]),
                   x[cut:], y[cut:])

    signature = (tf.TensorSpec((full, batch_size) + pixels.shape[1:], tf.float32),
                 tf.TensorSpec((full, batch_size, targets.shape[1]), tf.float32),
                 tf.TensorSpec((rest,) + pixels.shape[1:], tf.float32), tf.TensorSpec((rest, targets.shape[1]), tf.float32))

    def batches(x_full, y_full, x_rest, y_rest):
        epoch = tf.data.Dataset.from_tensor_slices((x_full, y_full))
        return epoch.concatenate(tf.data.Dataset.from_tensors((x_rest, y_rest))) if rest else epoch

    dataset = tf.data.Dataset.from_generator(epochs, output_signature=signature).flat_map(batches)
    return dataset.with_options(quiet_pipeline())


def quiet_pipeline() -> tf.data.Options:
    """tf.data options for a pipeline that must not compete with training for the cores.

    A step only slices its batch off the epoch's arrays, so there is nothing to overlap:
    no injected prefetch thread, no autotuning thread, one thread of its own.
    """
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    options.autotune.enabled = False
    options.threading.private_threadpool_size = 1
    return options


def check_data(data) -> None:
    """A one-line ValueError naming the first problem of `data`'s three splits, if any.

    Each split needs images shaped (N, 28, 28) with finite numeric pixels, N >= 1, and N
    integer labels in 0..9.
    """
    for split in SPLITS:
        x_name, y_name = f"x_{split}", f"y_{split}"
        if getattr(data, x_name, None) is None or getattr(data, y_name, None) is None:
            raise ValueError(f"data has no {x_name} or {y_name}")
        images, labels = np.asarray(getattr(data, x_name)), np.asarray(getattr(data, y_name))
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"data.{x_name} must have shape (N, 28, 28), got {images.shape}")
        if len(images) == 0:
            raise ValueError(f"data.{x_name} is empty")
        if images.dtype == bool or not (np.issubdtype(images.dtype, np.integer)
                                        or np.issubdtype(images.dtype, np.floating)):
            raise ValueError(f"data.{x_name} must hold numeric pixels, got dtype {images.dtype}")
        if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
            raise ValueError(f"data.{x_name} has NaN or infinite pixels")
        if labels.ndim != 1:
            raise ValueError(f"data.{y_name} must be one label per image, got shape {labels.shape}")
        if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"data.{y_name} must hold integer labels 0..9, got dtype {labels.dtype}")
        if len(labels) != len(images):
            raise ValueError(f"data.{x_name} has {len(images)} images but data.{y_name} has {len(labels)} labels")
        if labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise ValueError(f"data.{y_name} must lie in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")


def _finite(value):
    # JSON has no NaN or infinity; a diverged run reports them as null.
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# Config fields in which a run may differ from the earlier run whose model it trains again (model=):
# neither changes the model or what Keras compiled for it.
RETRAINABLE = ("seed", "epochs")


@dataclasses.dataclass(eq=False)
class _Trained:
    """What `train(..., model=)` needs to train a model of an earlier run again (kept on the model)."""

    config: Config
    data: CourseData
    metrics: EpochMetrics


def _same_data(first, second) -> bool:
    return first is second or all(np.array_equal(getattr(first, f"{axis}_{split}"), getattr(second, f"{axis}_{split}"))
                                  for split in SPLITS for axis in ("x", "y"))


def _reset(model: keras.Model, config: Config, data: CourseData) -> EpochMetrics:
    """Put `model` (trained by an earlier `train`) back in the state a fresh `build_model(config, data)` has.

    Every variable (weights, dropout and augmentation seeds) takes the value of a freshly built
    model, and the optimizer's (step count, momenta) that of a fresh optimizer; what Keras
    compiled for the model stays. Returns the earlier run's EpochMetrics, compiled for the model.
    """
    trained = getattr(model, "_mnistlab_trained", None)
    if not isinstance(trained, _Trained):
        raise ValueError("model= takes the model of an earlier ml.train (its Result.model)")
    differences = [field.name for field in dataclasses.fields(Config)
                   if field.name not in RETRAINABLE and getattr(trained.config, field.name) != getattr(config, field.name)]
    if differences:
        raise ValueError(f"model= was trained with another {', '.join(differences)}; only "
                         f"{' and '.join(RETRAINABLE)} may differ (leave model= out to build a new model)")
    if not _same_data(trained.data, data):
        raise ValueError(f"model= was trained on other data; only {' and '.join(RETRAINABLE)} may differ (leave "
                         "model= out to build a new model)")
    # set_seed without TensorFlow's global seed: setting that clears TensorFlow's caches, and with
    # them the compiled step and measurement this model brings (about 0.2 s to build again). Nothing
    # ml.train runs draws from it (every random op has a seed of its own), nor from Keras' global
    # generator; Python's and NumPy's are seeded for the user's callbacks, as set_seed does.
    tf.config.experimental.enable_op_determinism()
    random.seed(config.seed)
    np.random.seed(config.seed)
    fresh = _architecture(config, data)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    optimizer.build(fresh.trainable_variables)
    for old, new in itertools.chain(zip(model.variables, fresh.variables),
                                    zip(model.optimizer.variables, optimizer.variables)):
        if tuple(old.shape) != tuple(new.shape):  # the checks above make this impossible
            raise RuntimeError(f"cannot reset {old.path}: shape {old.shape} against {new.shape}")
        old.assign(new)
    return trained.metrics


def train(config: Config = Config(), data: CourseData | None = None, verbose: int = 0,
          callbacks: list | None = None, model: keras.Model | None = None) -> Result:
    """Train once with `config` through Keras' `fit`; every per-epoch metric comes from this one pass.

    The model from `build_model` runs one epoch of mini-batch steps per compiled call and
    visits the training rows in the seeded orders of `epoch_orders`; `EpochMetrics` measures
    every split at initialisation and after each epoch. Your `callbacks` run after it, as in
    any `fit`: they see its keys in `logs`, and keys they add land in the history.

    `model`: the `Result.model` of an earlier `train` whose config differs from `config` in the
    seed or the number of epochs alone (`RETRAINABLE`), on the same data. That model is reset to `config`'s initial weights and a fresh
    optimizer state and trained again, so that Keras' compiled step and the metrics' compiled
    measurement are reused instead of traced anew (about half a second per MLP run). The
    results are the same bits as without `model=`; the earlier Result's model is this run's
    model from then on.
    """
    if data is None:
        data = load_course_data(config.per_class, config.source)
    check_data(data)
    start = time.perf_counter()
    if model is None:
        set_seed(config.seed)
        model = build_model(config, data)
        metrics = EpochMetrics((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test))
    else:
        metrics = _reset(model, config, data)
    fitted = model.fit(shuffled_batches(data.x_train, data.y_train, config.batch_size, config.seed),
                       epochs=config.epochs, steps_per_epoch=steps_per_epoch(len(data.y_train), config.batch_size),
                       shuffle=False,  # the dataset is already in the seeded order
                       verbose=verbose, callbacks=[metrics] + list(callbacks or []))
    seconds = time.perf_counter() - start
    model._mnistlab_trained = _Trained(config, data, metrics)
    history = {key: [_finite(v) for v in values] for key, values in fitted.history.items()}
    initial = {key: _finite(value) for key, value in metrics.initial.items()}
    final = dict(initial)
    final.update({key: values[-1] for key, values in history.items() if values})
    for split, prefix in SPLITS.items():
        error, count = final.get(f"{prefix}zero_one_error"), len(getattr(data, f"y_{split}"))
        if error is not None:  # the exact fraction right, from the count wrong
            final[f"{split}_accuracy"] = (count - round(error * count)) / count
    return Result(config, history, final, seconds, metrics.diverged, initial, model)


def study(base: Config = Config(), data: CourseData | None = None, verbose: int = 0) -> list[Result]:
    """The original notebook's six MLP configurations: 1, 2, 3 hidden layers x lambda in {0, 5}, one after another.

    (Threads do not pay with Keras' `fit`: two runs at a time took as long as one after the
    other on 2 cores; see README's Performance section.)
    """
    if data is None:
        data = load_course_data(base.per_class, base.source)
    configs = [dataclasses.replace(base, model="mlp", hidden_layers=h, l2_lambda=lam) for h, lam in STUDY_GRID]
    return [train(config, data, verbose) for config in configs]


def train_grid(base: Config, grid: dict, seeds, data: CourseData | None = None,
               metrics=("val_accuracy", "test_accuracy", "train_accuracy")) -> list[dict]:
    """In-process twin of a sweep: one `train` per combination of `grid` values and seed.

    `grid` maps Config field names to lists of values. Rows are shaped like a sweep's
    results.csv: the parameters, the seed, the chosen `Result.final` metrics, seconds,
    status ("ok" or "diverged") and error. No kernel start per run, so it fits a book page; the
    seeds of one combination train one model again (`train`'s `model=`), compiled and traced once.
    """
    unknown = sorted(set(grid) - {field.name for field in dataclasses.fields(Config)})
    if unknown:
        raise ValueError(f"unknown Config field(s) in grid: {', '.join(unknown)}")
    if data is None:
        data = load_course_data(base.per_class, base.source)
    names = list(grid)
    combinations = [dict(zip(names + ["seed"], values))
                    for values in itertools.product(*(grid[name] for name in names), seeds)]
    rows, model, previous = [], None, None
    for changes in combinations:
        config = dataclasses.replace(base, **changes)
        # Runs that differ only where train(model=) allows (RETRAINABLE; the seeds are the innermost loop)
        # train one model again.
        reuse = previous is not None and dataclasses.replace(
            previous, **{name: getattr(config, name) for name in RETRAINABLE}) == config
        result = train(config, data, model=model if reuse else None)
        model, previous = result.model, config
        row = dict(changes)
        row.update({metric: result.final.get(metric) for metric in metrics})
        row.update(seconds=result.seconds, status="diverged" if result.diverged else "ok", error="")
        rows.append(row)
    return rows
