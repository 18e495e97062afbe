"""`python -m mnistlab bench`: the original protocol, a plain Keras fit and mnistlab's engine, timed in one run."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

import numpy as np


def machine() -> dict:
    """What the timings ran on: cores, CPU model, load, library versions."""
    import keras
    import tensorflow as tf

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cores": os.cpu_count(), "cpu": model, "load_average_1min": round(load, 2),
            "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}


def original_protocol(config, data) -> float:
    """The original notebook's cost, ported to Keras 3: each configuration trained three times.

    1. one `fit` of all epochs for the history; 2. a fresh model, epochs x (fit one epoch,
    predict both sets) for the zero-one error; 3. a fresh model, epochs x (copy weights, fit
    one epoch with validation, copy weights) for the learning speed. Corrected
    hyperparameters (the config's SGD and L2), batch 10 as in the original; returns seconds.
    """
    import mnistlab as ml

    x_train, x_test = data.x_train.astype(np.float32), data.x_val.astype(np.float32)
    y_train, y_test = ml.one_hot(data.y_train), ml.one_hot(data.y_val)
    fit = dict(batch_size=config.batch_size, verbose=0)
    start = time.perf_counter()
    ml.set_seed(config.seed)
    model = ml.build_model(config, data)
    model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=config.epochs, **fit)
    model = ml.build_model(config, data)
    errors = []
    for _ in range(config.epochs):
        model.fit(x_train, y_train, epochs=1, **fit)
        errors.append([np.mean(np.argmax(model.predict(x, verbose=0), axis=1) != labels)
                       for x, labels in ((x_train, data.y_train), (x_test, data.y_val))])
    model = ml.build_model(config, data)
    parameters = model.count_params()
    changes = []
    for _ in range(config.epochs):
        old = model.get_weights()
        model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=1, **fit)
        new = model.get_weights()
        with np.errstate(divide="ignore", invalid="ignore"):
            changes.append(sum(np.sum(np.abs((o - n) / n)) for o, n in zip(old, new)) / parameters)
    return time.perf_counter() - start


def plain_fit(config, data):
    """One plain Keras `fit` (batch 10, validation data, no extra metrics) in mnistlab's seeded row order.

    Returns (seconds, final test accuracy, final running training accuracy).
    """
    import mnistlab as ml
    from mnistlab import fast

    start = time.perf_counter()
    ml.set_seed(config.seed)
    model = ml.build_model(config, data)
    orders = fast.shuffled_orders(data.num_train, config.epochs, config.seed)
    history = model.fit(fast.input_pipeline(data.x_train, ml.one_hot(data.y_train), config.batch_size, orders),
                        epochs=config.epochs, steps_per_epoch=-(-data.num_train // config.batch_size),
                        shuffle=False,  # the dataset already is in the seeded order
                        validation_data=(data.x_val.astype(np.float32), ml.one_hot(data.y_val)),
                        validation_batch_size=config.batch_size, verbose=0).history
    return time.perf_counter() - start, history["val_accuracy"][-1], history["accuracy"][-1]


def _label(config) -> str:
    if config.model == "cnn":
        return "CNN, augmentation"
    return f"{config.hidden_layers} hidden, lambda={config.l2_lambda:g}"


def run(per_class: int, epochs: int, skip_original: bool, skip_cnn: bool, tolerance: float, seed: int) -> dict:
    """Time everything; the mnistlab engine goes first, so it pays TensorFlow's one-time start-up costs."""
    import mnistlab as ml
    from mnistlab import fast

    import tensorflow as tf

    # The original protocol's predict-per-epoch loop retraces by design; its warnings are noise here.
    tf.get_logger().setLevel("ERROR")
    data = ml.load_course_data(per_class)
    base = ml.Config(per_class=per_class, epochs=epochs, seed=seed)
    configs = [dataclasses.replace(base, hidden_layers=h, l2_lambda=lam) for h, lam in ml.STUDY_GRID]
    load_at_start = machine()["load_average_1min"]  # other processes' load colours every timing
    fast.clear_compiled()
    start, cpu_start = time.perf_counter(), time.process_time()
    results = ml.study(base, data)
    study_seconds, study_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    fast.clear_compiled()  # once more in one thread, compiling again, to show what the threads bring
    start = time.perf_counter()
    ml.study(base, data, workers=1)
    one_thread_seconds = time.perf_counter() - start
    rows = []
    for config, result in zip(configs, results):
        plain_seconds, plain_test, plain_train = plain_fit(config, data)
        rows.append({"configuration": _label(config), "mnistlab_seconds": result.seconds,
                     "plain_fit_seconds": plain_seconds,
                     "original_seconds": None if skip_original else original_protocol(config, data),
                     "mnistlab_test_accuracy": result.final.get("test_accuracy"), "plain_test_accuracy": plain_test,
                     "mnistlab_running_accuracy": result.final.get("accuracy"), "plain_running_accuracy": plain_train})
    summary = {"mnistlab_seconds": study_seconds, "mnistlab_cpu_seconds": study_cpu,
               "mnistlab_one_thread_seconds": one_thread_seconds,
               "plain_fit_seconds": sum(r["plain_fit_seconds"] for r in rows),
               "original_seconds": None if skip_original else sum(r["original_seconds"] for r in rows)}
    if not skip_cnn:
        cnn = dataclasses.replace(base, model="cnn")
        result = ml.train(cnn, data)
        plain_seconds, plain_test, plain_train = plain_fit(cnn, data)
        rows.append({"configuration": _label(cnn), "mnistlab_seconds": result.seconds,
                     "plain_fit_seconds": plain_seconds, "original_seconds": None,
                     "mnistlab_test_accuracy": result.final.get("test_accuracy"), "plain_test_accuracy": plain_test,
                     "mnistlab_running_accuracy": result.final.get("accuracy"), "plain_running_accuracy": plain_train})
    for row in rows:
        gaps = [abs(row[f"mnistlab_{kind}_accuracy"] - row[f"plain_{kind}_accuracy"])
                if row[f"mnistlab_{kind}_accuracy"] is not None else float("inf") for kind in ("test", "running")]
        row["agrees"] = max(gaps) <= tolerance
    return {"machine": machine(), "load_average_at_start": load_at_start, "per_class": per_class, "epochs": epochs, "tolerance": tolerance,
            "rows": rows, "study": summary, "agrees": all(row["agrees"] for row in rows)}


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(report: dict) -> str:
    """The report as a Markdown table: seconds per configuration, totals, ratios, accuracy agreement."""
    lines = ["| configuration | original protocol (s) | plain fit (s) | mnistlab (s) "
             "| test accuracy plain / mnistlab |", "|---|---:|---:|---:|---|"]
    for row in report["rows"]:
        lines.append(f"| {row['configuration']} | {_seconds(row['original_seconds'])} | "
                     f"{_seconds(row['plain_fit_seconds'])} | {_seconds(row['mnistlab_seconds'])} | "
                     f"{row['plain_test_accuracy']:.3f} / {row['mnistlab_test_accuracy']:.3f}"
                     f"{'' if row['agrees'] else ' (DISAGREE)'} |")
    study = report["study"]
    lines.append(f"| **six-configuration study** | {_seconds(study['original_seconds'])} | "
                 f"{_seconds(study['plain_fit_seconds'])} | {_seconds(study['mnistlab_seconds'])} | |")
    ours = study["mnistlab_seconds"]
    ratios = [f"{study[key] / ours:.0f}x" if study[key] is not None else "—"
              for key in ("original_seconds", "plain_fit_seconds")]
    lines.append(f"| **speed-up of mnistlab** | {ratios[0]} | {ratios[1]} | 1x | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mnistlab bench`; returns 0 if mnistlab agrees with the plain fit, else 1."""
    parser = argparse.ArgumentParser(
        prog="python -m mnistlab bench",
        description="Time the six-configuration MLP study three ways in one run: (a) a Keras 3 port of the "
                    "original notebook's protocol (each configuration trained three times), (b) one plain "
                    "Keras fit per configuration, (c) mnistlab's engine with every per-epoch metric; also the "
                    "CNN. Prints a Markdown table; exits 1 if (c) and (b) final accuracies differ by more "
                    "than the tolerance. Not a test: timings depend on the machine and its load.")
    parser.add_argument("--per-class", type=int, default=100, help="images per digit in each set (default 100)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per configuration (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--skip-original", action="store_true", help="skip the original protocol (the slow part)")
    parser.add_argument("--skip-cnn", action="store_true", help="skip the CNN comparison")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest allowed accuracy gap between mnistlab and the plain fit (default 0.01)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    args = parser.parse_args(argv)
    import mnistlab as ml  # after argparse, so --help answers without loading TensorFlow

    try:
        dataclasses.replace(ml.Config(), per_class=args.per_class, epochs=args.epochs, seed=args.seed)
    except ValueError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    report = run(args.per_class, args.epochs, args.skip_original, args.skip_cnn, args.tolerance, args.seed)
    info = report["machine"]
    print(table(report))
    study = report["study"]
    print(f"\nmnistlab's study: {study['mnistlab_seconds']:.1f} s wall with its default threads "
          f"({study['mnistlab_cpu_seconds']:.1f} s of CPU), {study['mnistlab_one_thread_seconds']:.1f} s in one "
          f"thread; both include compiling. Per-configuration mnistlab times overlap (two at a time).")
    print(f"{info['cores']} cores, {info['cpu']}, load average {report['load_average_at_start']} at the start "
          f"and {info['load_average_1min']} at the end; "
          f"Python {info['python']}, TensorFlow {info['tensorflow']}, Keras {info['keras']}; "
          f"{args.per_class * 10} training and {args.per_class * 10} test images, {args.epochs} epochs.")
    if args.json:
        from mnistlab.experiment import write_json_atomic

        write_json_atomic(args.json, report)
    if not report["agrees"]:
        print(f"bench: mnistlab and the plain fit disagree by more than {args.tolerance} in accuracy",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
