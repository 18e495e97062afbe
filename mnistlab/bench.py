"""`python -m mnistlab bench`: the original protocol, a naive Keras fit and `ml.train`, timed alternately in one run."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time

import numpy as np

from .cli import Parser, UsageError, check_writable, report_stream, write_json

PATHS = ("original", "naive", "mnistlab")


def load_average() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def machine() -> dict:
    """What the timings ran on: cores, CPU model, library versions, thread setting."""
    import keras
    import tensorflow as tf

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS")}


def _plain_model(config, data):
    """`config`'s model compiled as a student would: Keras' default compile, accuracy as the one metric."""
    import mnistlab as ml

    model = ml.build_model(config, data)
    model.compile(optimizer=ml.make_optimizer(config.optimizer, config.learning_rate),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def original_protocol(config, data) -> dict:
    """The original notebook's cost, ported to Keras 3: each configuration trained three times.

    1. one `fit` of all epochs with the test set as validation data, for the history; 2. a
    fresh model, epochs x (fit one epoch, predict both sets) for the zero-one error; 3. a
    fresh model, epochs x (copy weights, fit one epoch with validation, copy weights) for the
    learning speed. The config's hyperparameters (corrected SGD and L2, batch 10, as in the
    original); Keras' default compile and shuffling.
    """
    import mnistlab as ml

    x_train, x_test = data.x_train.astype(np.float32), data.x_test.astype(np.float32)
    y_train, y_test = ml.one_hot(data.y_train), ml.one_hot(data.y_test)
    fit = dict(batch_size=config.batch_size, verbose=0)
    start = time.perf_counter()
    ml.set_seed(config.seed)
    model = _plain_model(config, data)
    history = model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=config.epochs, **fit).history
    model = _plain_model(config, data)
    errors = []
    for _ in range(config.epochs):
        model.fit(x_train, y_train, epochs=1, **fit)
        errors.append([np.mean(np.argmax(model.predict(x, verbose=0), axis=1) != labels)
                       for x, labels in ((x_train, data.y_train), (x_test, data.y_test))])
    model = _plain_model(config, data)
    parameters = model.count_params()
    changes = []
    for _ in range(config.epochs):
        old = model.get_weights()
        model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=1, **fit)
        new = model.get_weights()
        with np.errstate(divide="ignore", invalid="ignore"):
            changes.append(sum(np.sum(np.abs((o - n) / n)) for o, n in zip(old, new)) / parameters)
    return {"seconds": time.perf_counter() - start, "test_accuracy": history["val_accuracy"][-1]}


def naive_fit(config, data) -> dict:
    """A plain Keras `fit` as a student would write it: default compile (one step per call, no XLA),
    validation on the validation split every epoch in batches of `config.batch_size`, no extra
    metrics; the same model, optimizer and seeded row order as `ml.train`."""
    import mnistlab as ml
    from mnistlab import experiment

    start = time.perf_counter()
    ml.set_seed(config.seed)
    model = _plain_model(config, data)
    history = model.fit(experiment.shuffled_batches(data.x_train, data.y_train, config.batch_size, config.seed),
                        epochs=config.epochs,
                        steps_per_epoch=experiment.steps_per_epoch(len(data.y_train), config.batch_size),
                        shuffle=False,  # the dataset already is in the seeded order
                        validation_data=(data.x_val.astype(np.float32), ml.one_hot(data.y_val)),
                        validation_batch_size=config.batch_size, verbose=0).history
    return {"seconds": time.perf_counter() - start, "val_accuracy": history["val_accuracy"][-1],
            "running_accuracy": history["accuracy"][-1]}


def _timed(result) -> dict:
    """What the table compares of one `ml.train` result."""
    return {"seconds": result.seconds, "val_accuracy": result.history["val_accuracy"][-1],
            "running_accuracy": result.history["accuracy"][-1], "test_accuracy": result.final["test_accuracy"]}


def mnistlab_train(config, data) -> dict:
    import mnistlab as ml

    return _timed(ml.train(config, data))


def _label(config) -> str:
    if config.model == "cnn":
        return "CNN, augmentation"
    return f"{config.hidden_layers} hidden, lambda={config.l2_lambda:g}"


def run(per_class: int, epochs: int, repeats: int, skip_original: bool, skip_cnn: bool, tolerance: float,
        seed: int, progress=None) -> dict:
    """Time every path `repeats` times, alternating (mnistlab, naive, original, then the CNN's naive
    and mnistlab), so that a change in the machine's load touches all of them alike."""
    import mnistlab as ml

    import tensorflow as tf

    # The original protocol's predict-per-epoch loop retraces by design; its warnings are noise here.
    tf.get_logger().setLevel("ERROR")
    data = ml.load_course_data(per_class)
    base = ml.Config(per_class=per_class, epochs=epochs, seed=seed)
    configs = [dataclasses.replace(base, hidden_layers=h, l2_lambda=lam) for h, lam in ml.STUDY_GRID]
    cnn = dataclasses.replace(base, model="cnn")
    say = progress or (lambda text: None)
    runs = []
    for repeat in range(repeats):
        record = {"repeat": repeat + 1, "load_at_start": load_average(), "study": {}, "configurations": []}
        start = time.perf_counter()
        results = [ml.train(config, data) for config in configs]
        record["study"]["mnistlab"] = time.perf_counter() - start
        say(f"repeat {repeat + 1}: mnistlab study {record['study']['mnistlab']:.1f} s (load {load_average()})")
        naive = [naive_fit(config, data) for config in configs]
        record["study"]["naive"] = sum(r["seconds"] for r in naive)
        say(f"repeat {repeat + 1}: naive study {record['study']['naive']:.1f} s (load {load_average()})")
        original = [None] * len(configs) if skip_original else [original_protocol(c, data) for c in configs]
        record["study"]["original"] = None if skip_original else sum(r["seconds"] for r in original)
        if not skip_original:
            say(f"repeat {repeat + 1}: original study {record['study']['original']:.1f} s (load {load_average()})")
        for config, result, plain, old in zip(configs, results, naive, original):
            record["configurations"].append({"configuration": _label(config), "mnistlab": _timed(result),
                                             "naive": plain, "original": old})
        if not skip_cnn:
            plain, ours = naive_fit(cnn, data), mnistlab_train(cnn, data)
            record["configurations"].append({"configuration": _label(cnn), "mnistlab": ours, "naive": plain,
                                             "original": None})
            say(f"repeat {repeat + 1}: CNN naive {plain['seconds']:.1f} s, mnistlab {ours['seconds']:.1f} s "
                f"(load {load_average()})")
        record["load_at_end"] = load_average()
        runs.append(record)
    rows = []
    for index, entry in enumerate(runs[0]["configurations"]):
        row = {"configuration": entry["configuration"]}
        for path in PATHS:
            seconds = [run["configurations"][index][path]["seconds"] for run in runs
                       if run["configurations"][index][path] is not None]
            row[f"{path}_seconds"] = min(seconds) if seconds else None
            row[f"{path}_seconds_all"] = seconds
        ours, plain = entry["mnistlab"], entry["naive"]
        row.update(mnistlab_val_accuracy=ours["val_accuracy"], naive_val_accuracy=plain["val_accuracy"],
                   mnistlab_test_accuracy=ours["test_accuracy"],
                   agrees=max(abs(ours[k] - plain[k]) for k in ("val_accuracy", "running_accuracy")) <= tolerance)
        rows.append(row)
    study = {}
    for path in PATHS:
        seconds = [run["study"][path] for run in runs if run["study"][path] is not None]
        study[f"{path}_seconds"] = min(seconds) if seconds else None
        study[f"{path}_seconds_all"] = seconds
    return {"machine": machine(), "per_class": per_class, "epochs": epochs, "repeats": repeats,
            "tolerance": tolerance, "runs": runs, "rows": rows, "study": study,
            "agrees": all(row["agrees"] for row in rows)}


def _seconds(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(report: dict) -> str:
    """The report as a Markdown table: best seconds per path, totals, ratios, accuracy agreement."""
    from .plots import Table

    rows = []
    for row in report["rows"]:
        rows.append([row["configuration"], _seconds(row["original_seconds"]), _seconds(row["naive_seconds"]),
                     _seconds(row["mnistlab_seconds"]), f"{row['mnistlab_seconds'] / row['naive_seconds']:.2f}",
                     f"{row['naive_val_accuracy']:.3f} / {row['mnistlab_val_accuracy']:.3f}"
                     + ("" if row["agrees"] else " (DISAGREE)")])
    study = report["study"]
    ours = study["mnistlab_seconds"]
    rows.append(["**six-configuration study**", _seconds(study["original_seconds"]), _seconds(study["naive_seconds"]),
                 _seconds(ours), f"{ours / study['naive_seconds']:.2f}", ""])
    rows.append(["**ml.train is faster by**"] + [f"{study[key] / ours:.0f}x" if study[key] is not None else "—"
                                                 for key in ("original_seconds", "naive_seconds")] + ["", "", ""])
    return Table(["configuration", "(a) original protocol (s)", "(b) naive fit (s)", "(c) ml.train (s)", "(c) / (b)",
                  "validation accuracy (b) / (c)"], rows).to_markdown()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mnistlab bench`: 0 if ml.train agrees with the naive fit, 1 if not or if the
    JSON report could not be written (it is then printed on stdout), 2 on bad input (one line, nothing run)."""
    try:
        return _bench(argv)
    except UsageError as error:  # the same one line as `python -m mnistlab train` gives
        print(f"error: {error}", file=sys.stderr)
        return 2


def _bench(argv: list[str] | None) -> int:
    import mnistlab as ml

    parser = Parser(
        prog="python -m mnistlab bench",
        description="Time the six-configuration MLP study and the CNN three ways in one run, alternating: "
                    "(a) a Keras 3 port of the original notebook's protocol (each configuration trained three "
                    "times), (b) a naive Keras fit (one step per call, validation every epoch in batches of 10), "
                    "(c) ml.train with every per-epoch metric. Prints a Markdown table of the best of "
                    "--repeats runs; exits 1 if (c) and (b) final accuracies differ by more than the tolerance. "
                    "Not a test: timings depend on the machine and its load.")
    parser.add_argument("--per-class", type=int, default=100, help="images per digit in each split (default 100)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per configuration (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of every path; the table shows the "
                                                               "best (default 2)")
    parser.add_argument("--skip-original", action="store_true", help="skip the original protocol (the slow part)")
    parser.add_argument("--skip-cnn", action="store_true", help="skip the CNN comparison")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest allowed accuracy gap between ml.train and the naive fit (default 0.01)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the report as JSON (a file, - for stdout with the table and progress on "
                             "stderr, or a device or FIFO)")
    args = parser.parse_args(argv)
    # Every check before the first fit: a bad path or value costs nothing, and nothing is half-written.
    check_writable(args.json)
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    try:
        ml.Config(per_class=args.per_class, epochs=args.epochs, seed=args.seed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    out = report_stream(args)

    def say(text):
        print(f"bench: {text}", file=out, flush=True)

    say(f"load average {load_average()} at the start")
    report = run(args.per_class, args.epochs, args.repeats, args.skip_original, args.skip_cnn, args.tolerance,
                 args.seed, progress=say)
    info = report["machine"]
    print(table(report), file=out)
    loads = ", ".join(f"{run['load_at_start']}-{run['load_at_end']}" for run in report["runs"])
    print(f"\nBest of {args.repeats} alternating run(s); load average per run (start-end): {loads}. "
          f"{info['cores']} cores, {info['cpu']}; Python {info['python']}, TensorFlow {info['tensorflow']}, "
          f"Keras {info['keras']}, TF_NUM_INTRAOP_THREADS={info['TF_NUM_INTRAOP_THREADS']}; "
          f"{args.per_class * 10} images per split, {args.epochs} epochs.", file=out)
    for row in report["rows"]:
        spread = ", ".join(f"{path} {min(row[f'{path}_seconds_all']):.1f}-{max(row[f'{path}_seconds_all']):.1f} s"
                           for path in PATHS if row[f"{path}_seconds_all"])
        if row["configuration"].startswith("CNN"):
            print(f"CNN, range over the runs: {spread}", file=out)
    # Atomic as the CLI's outputs; a write that fails prints the JSON on stdout instead and says so.
    written = write_json(args.json, report) if args.json else True
    if not report["agrees"]:
        print(f"bench: ml.train and the naive fit disagree by more than {args.tolerance} in accuracy",
              file=sys.stderr)
        return 1
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
