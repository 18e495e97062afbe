"""One frozen config, one `fit` per configuration, results that carry their config."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import math
import os
import time

import keras
import tensorflow as tf

from . import callbacks as cb
from . import fast
from .config import STUDY_GRID, Config
from .data import CourseData, load_course_data, one_hot
from .files import write_atomic
from .models import build_cnn, build_mlp, l2_coefficient, make_optimizer

@dataclasses.dataclass
class Result:
    """What one run produced: its config, per-epoch history, final metrics, time, divergence."""

    config: Config
    history: dict  # per-epoch lists; speed and weight-change lists have epochs + 1 values
    final: dict  # last value of every history list, plus train/test accuracy of the final weights
    seconds: float  # wall time of building and fitting
    diverged: bool  # a NaN or infinite loss stopped training
    model: keras.Model | None = None

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "history": self.history, "final": self.final,
                "seconds": self.seconds, "diverged": self.diverged}


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's kernels deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build_model(config: Config, data: CourseData) -> keras.Model:
    """The compiled model `config` describes, standardised on `data.x_train`."""
    l2 = l2_coefficient(config.l2_lambda, data.num_train, config.l2_convention)
    if config.model == "mlp":
        model = build_mlp(data.x_train, config.hidden_layers, config.units, config.activation, l2, config.init,
                          config.seed, config.l2_layers)
    else:
        model = build_cnn(data.x_train, l2, config.seed, l2_layers=config.l2_layers)
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _finite(value: float):
    # JSON has no NaN or infinity; a diverged run reports them as null.
    return value if math.isfinite(value) else None


ENGINES = ("fast", "keras")


def _template_builder(config: Config, data: CourseData):
    # The fast engine compiles once per architecture; its template carries L2 so that
    # lambda = 0 and lambda > 0 share it (the strength is fed in as a number).
    return lambda: build_model(dataclasses.replace(config, l2_lambda=1.0, l2_convention="nielsen", seed=0), data)


def train(config: Config = Config(), data: CourseData | None = None, verbose: int = 0,
          callbacks: list | None = None, engine: str = "fast") -> Result:
    """Train once with `config`; every per-epoch metric comes from this single pass over the epochs.

    engine="fast" (default) runs each epoch of mini-batch steps as one compiled call (XLA for
    the MLPs) and all metrics as one more (mnistlab.fast); engine="keras" is a plain `model.fit` with the metric
    callbacks. Both use the same Keras model, optimizer and seeded data order. Callbacks get
    on_epoch_end with logs in both engines; batch-level hooks only in the keras engine.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if data is None:
        data = load_course_data(config.per_class, config.source)
    start = time.perf_counter()
    set_seed(config.seed)
    model = build_model(config, data)
    orders = fast.shuffled_orders(data.num_train, config.epochs, config.seed)
    if engine == "fast":
        history, diverged = fast.fit(model, _template_builder(config, data), data.x_train, one_hot(data.y_train),
                                     data.x_val, one_hot(data.y_val), batch_size=config.batch_size,
                                     orders=orders, callbacks=callbacks or [],
                                     jit_compile=config.model == "mlp", verbose=verbose)
        history = {key: [_finite(v) for v in values] for key, values in history.items()}
    else:
        speed = cb.LearningSpeed(data.x_train, data.y_train)
        guard = cb.DivergenceGuard()
        metric_callbacks = [cb.ZeroOneError(data.x_train, data.y_train, data.x_val, data.y_val), speed, guard]
        fitted = model.fit(fast.input_pipeline(data.x_train, one_hot(data.y_train), config.batch_size, orders),
                           epochs=config.epochs, steps_per_epoch=-(-data.num_train // config.batch_size),
                           shuffle=False,  # the dataset already is in the seeded order
                           validation_data=(data.x_val, one_hot(data.y_val)),
                           validation_batch_size=len(data.x_val), verbose=verbose,
                           callbacks=metric_callbacks + list(callbacks or []))
        history = {key: [_finite(float(v)) for v in values] for key, values in fitted.history.items()}
        history.update({key: [_finite(v) for v in values] for key, values in speed.history.items()})
        diverged = guard.diverged
    seconds = time.perf_counter() - start
    final = {key: values[-1] for key, values in history.items() if values}
    for split, key in (("train_accuracy", "zero_one_error"), ("test_accuracy", "val_zero_one_error")):
        if final.get(key) is not None:
            final[split] = 1.0 - final[key]
    return Result(config, history, final, seconds, diverged, model)


def train_many(configs: list[Config], data: CourseData, verbose: int = 0, workers: int | None = None) -> list[Result]:
    """`train` each config on the same data, `workers` at a time in threads (default: up to 2 cores).

    Results come back in the order of `configs` and are bit-identical to one-by-one runs:
    each run is seeded by its config alone. Configs of one architecture share the fast
    engine's compiled code, so the queue starts with one of each architecture.
    """
    if workers is None:
        workers = 1 if verbose else min(2, os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(configs) < 2:
        return [train(config, data, verbose) for config in configs]
    seen = {}
    for index, config in enumerate(configs):
        shape = (config.model, config.hidden_layers, config.units, config.activation, config.optimizer,
                 config.batch_size)
        seen.setdefault(shape, []).append(index)
    queue = [index for round_ in itertools.zip_longest(*seen.values()) for index in round_ if index is not None]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {index: pool.submit(train, configs[index], data, verbose) for index in queue}
        return [futures[index].result() for index in range(len(configs))]


def study(base: Config = Config(), data: CourseData | None = None, verbose: int = 0,
          workers: int | None = None) -> list[Result]:
    """The original notebook's six MLP configurations: 1, 2, 3 hidden layers x lambda in {0, 5}."""
    if data is None:
        data = load_course_data(base.per_class, base.source)
    configs = [dataclasses.replace(base, model="mlp", hidden_layers=h, l2_lambda=lam) for h, lam in STUDY_GRID]
    return train_many(configs, data, verbose, workers)


def write_json_atomic(path: str, payload) -> None:
    """Write JSON to `path` atomically, so a failure leaves no half-written file."""
    write_atomic(path, json.dumps(payload, indent=1))
