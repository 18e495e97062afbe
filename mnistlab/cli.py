"""Command line: `python -m mnistlab train|study|bench|sweep`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

from .config import ACTIVATIONS, INITS, L2_CONVENTIONS, L2_LAYERS, MODELS, OPTIMIZERS, STUDY_GRID, Config
from .data import SOURCES
from .files import atomic_path, output_kind, write_atomic

DEFAULTS = Config()
# Hyperparameters of the MLPs that the CNN's fixed architecture does not read.
MLP_ONLY = ("hidden_layers", "units", "activation", "init")


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before an error; one actionable line is friendlier.
    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_config_options(parser: argparse.ArgumentParser, study: bool = False) -> None:
    options = parser.add_argument_group("hyperparameters (defaults: the corrected course settings)")
    # The MLP-only options default to None here so that `--model cnn` can tell a given option
    # from a default; _config_from fills in the defaults.
    if not study:
        options.add_argument("--model", choices=MODELS, default=DEFAULTS.model, help="network (default: %(default)s)")
        options.add_argument("--hidden-layers", type=int, default=None,
                             help=f"MLP hidden layers, 0 = softmax regression (default: {DEFAULTS.hidden_layers})")
        options.add_argument("--l2-lambda", type=float, default=DEFAULTS.l2_lambda,
                             help="L2 strength lambda (default: %(default)s)")
    options.add_argument("--units", type=int, default=None,
                         help=f"units per MLP hidden layer (default: {DEFAULTS.units})")
    options.add_argument("--activation", choices=ACTIVATIONS, default=None,
                         help=f"MLP hidden activation (default: {DEFAULTS.activation})")
    options.add_argument("--l2-convention", choices=L2_CONVENTIONS, default=DEFAULTS.l2_convention,
                         help="nielsen: l2(lambda/(2n)); keras: l2(lambda) as written (default: %(default)s)")
    options.add_argument("--l2-layers", choices=L2_LAYERS, default=DEFAULTS.l2_layers,
                         help="weight matrices L2 reaches: hidden = all but the output layer (the original "
                              "notebook), all = every one (Nielsen) (default: %(default)s)")
    options.add_argument("--optimizer", default=DEFAULTS.optimizer,
                         help=f"one of {', '.join(OPTIMIZERS)} (default: %(default)s)")
    options.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate,
                         help="eta (default: %(default)s)")
    options.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                         help="mini-batch size (default: %(default)s)")
    options.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="epochs (default: %(default)s)")
    options.add_argument("--per-class", type=int, default=DEFAULTS.per_class,
                         help="images per digit in each split (default: %(default)s)")
    options.add_argument("--init", choices=INITS, default=None,
                         help=f"MLP weight initialisation (default: {DEFAULTS.init})")
    options.add_argument("--source", choices=SOURCES, default=DEFAULTS.source,
                         help="data source (default: %(default)s)")
    options.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default: %(default)s)")


def _config_from(args: argparse.Namespace, **overrides) -> Config:
    if getattr(args, "model", "mlp") == "cnn" and "model" not in overrides:
        given = [name for name in MLP_ONLY if getattr(args, name, None) is not None]
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            raise UsageError(f"{options} {'does' if len(given) == 1 else 'do'} not apply to --model cnn "
                             f"(its architecture is fixed); leave {'it' if len(given) == 1 else 'them'} out")
    fields = {}
    for field in dataclasses.fields(Config):
        value = getattr(args, field.name, None)
        if value is not None:
            fields[field.name] = value
    fields.update(overrides)
    try:
        return Config(**fields)
    except ValueError as error:
        raise UsageError(str(error)) from None


def check_writable(path: str | None, suffix: str | None = None) -> None:
    """Fail before training, not after, when an output path cannot be written."""
    if path is None or path == "-" and suffix is None:  # "-": JSON to stdout
        return
    try:
        kind = output_kind(path)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if suffix and kind == "file" and not path.endswith(suffix):
        raise UsageError(f"output path {path!r} must end with {suffix}")


def _same_file(first: str, second: str) -> bool:
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        return os.path.samefile(first, second)  # e.g. two names of one device or hard-linked file
    except OSError:
        return False


def _load_data(config: Config):
    """The course data for `config`; a missing, corrupt or unreachable source is one line."""
    from .data import load_course_data

    try:
        return load_course_data(config.per_class, config.source)
    except (ValueError, OSError, RuntimeError) as error:
        raise UsageError(str(error)) from None
    except Exception as error:  # e.g. zipfile.BadZipFile from a truncated cache: still the data's fault
        raise UsageError(f"cannot load the {config.source} data: {type(error).__name__}: {error}") from None


def _check_size(config: Config) -> None:
    """Refuse at once an MLP whose weights alone exceed the machine's memory (TensorFlow would retry
    its allocation for seconds before failing)."""
    if config.model != "mlp":
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not known on this system: let TensorFlow decide
        return
    units, layers = config.units, config.hidden_layers
    weights = (784 * units + (layers - 1) * units * units + 10 * units) if layers else 7840
    needed = 4 * weights  # float32, before gradients and optimiser state
    if needed > memory:
        raise UsageError(f"--units {units} with {layers} hidden layer(s) needs {needed / 2**30:.1f} GiB for the "
                         f"weights alone, more than this machine's {memory / 2**30:.1f} GiB of memory; "
                         f"use fewer --units or --hidden-layers")


def _out_of_memory(error: BaseException) -> UsageError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "OOM when allocating" in first:  # TensorFlow wraps the useful part in graph names
        first = "OOM when allocating" + first.split("OOM when allocating", 1)[1].split(" on /job", 1)[0]
    return UsageError(f"out of memory ({first}); use fewer --units or --hidden-layers, or a smaller "
                      f"--batch-size or --per-class")


def _run(function, *arguments, **keywords):
    """`function(...)` with a model or batch too large for memory turned into one line."""
    import tensorflow as tf

    try:
        return function(*arguments, **keywords)
    except (MemoryError, tf.errors.ResourceExhaustedError) as error:
        raise _out_of_memory(error) from None


def _config_record(config: Config) -> dict:
    """The config as written to JSON: fields the model does not read are listed, not given values."""
    record = config.to_dict()
    if config.model == "cnn":
        for name in MLP_ONLY:
            record.pop(name, None)
        record["not_applicable"] = list(MLP_ONLY)
    return record


def _payload(result) -> dict:
    payload = result.to_dict()
    payload["config"] = _config_record(result.config)
    return payload


def write_json(path: str, payload) -> bool:
    """Write `payload` to `path`; on failure print it to stdout instead and say so. True if written."""
    text = json.dumps(payload, indent=1)
    if path == "-":
        print(text, flush=True)
        return True
    try:
        write_atomic(path, text)
        return True
    except OSError as error:
        print(f"error: could not write {path} ({getattr(error, 'strerror', None) or error}); "
              f"the results are printed below instead", file=sys.stderr)
        print(text, flush=True)
        return False


def _save_model(model, path: str) -> bool:
    """Save `model` to `path` atomically; on failure save it in a new temporary folder and say where."""
    try:
        with atomic_path(path, ".keras") as temporary:  # Keras wants the suffix on the file it writes
            model.save(temporary)
        return True
    except Exception as error:  # OSError (disk full, ...) or whatever Keras raises while writing
        reason = getattr(error, "strerror", None) or error
    try:
        fallback = os.path.join(tempfile.mkdtemp(prefix="mnistlab-unsaved-"), "model.keras")
        model.save(fallback)
        print(f"error: could not save the model to {path} ({reason}); saved it to {fallback} instead",
              file=sys.stderr)
    except Exception as second:
        print(f"error: could not save the model to {path} ({reason}), nor to a temporary folder "
              f"({getattr(second, 'strerror', None) or second}); it is lost", file=sys.stderr)
    return False


def report_stream(args):
    # With --json - the JSON alone goes to stdout, so that it can be piped; the report goes to stderr.
    return sys.stderr if args.json == "-" else sys.stdout


def _progress_callback(stream):
    import keras

    class EpochLine(keras.callbacks.Callback):
        """One progress line per epoch."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = "  ".join(f"{key} {float(logs[key]):.4f}" for key in
                              ("loss", "accuracy", "val_loss", "val_accuracy") if key in logs)
            print(f"epoch {epoch + 1}/{self.params.get('epochs', '?')}  {shown}", file=stream, flush=True)

    return EpochLine()


def _accuracies(final: dict) -> str:
    shown = [f"{split} accuracy {final[key]:.4f}" for split, key in
             (("train", "train_accuracy"), ("validation", "val_accuracy"), ("test", "test_accuracy"))
             if isinstance(final.get(key), (int, float))]
    return ", ".join(shown) or "no accuracy (diverged or no epochs)"


def _train(args) -> int:
    from .experiment import train

    config = _config_from(args)
    _check_size(config)
    check_writable(args.json)
    check_writable(args.save, ".keras")
    if args.json and args.save and args.json != "-" and _same_file(args.json, args.save):
        raise UsageError(f"--json and --save name the same file {args.save!r}; give two paths")
    data = _load_data(config)
    report = report_stream(args)
    result = _run(train, config, data, verbose=0, callbacks=None if args.quiet else [_progress_callback(report)])
    described = f"hidden_layers={config.hidden_layers} " if config.model == "mlp" else ""
    print(f"{config.model} {described}lambda={config.l2_lambda}: {_accuracies(result.final)}, "
          f"{result.seconds:.1f} s{', DIVERGED' if result.diverged else ''}", file=report, flush=True)
    written = True
    if args.json:
        written &= write_json(args.json, _payload(result))
    if args.save:
        written &= _save_model(result.model, args.save)
    return 0 if written else 1


def _study(args) -> int:
    from .experiment import study

    base = _config_from(args, model="mlp")
    for hidden_layers, l2_lambda in STUDY_GRID:  # validate every variant before the first fit
        _check_size(_config_from(args, model="mlp", hidden_layers=hidden_layers, l2_lambda=l2_lambda))
    check_writable(args.json)
    data = _load_data(base)
    start = time.perf_counter()
    results = _run(study, base, data)
    wall = time.perf_counter() - start
    nan = float("nan")
    report = report_stream(args)
    print(f"{'hidden layers':>13}  {'lambda':>6}  {'train acc':>9}  {'val acc':>7}  {'test acc':>8}  "
          f"{'seconds':>7}  diverged", file=report)
    for result in results:
        c, f = result.config, result.final

        def number(key):
            return f[key] if isinstance(f.get(key), (int, float)) else nan

        print(f"{c.hidden_layers:>13}  {c.l2_lambda:>6g}  {number('train_accuracy'):>9.4f}  "
              f"{number('val_accuracy'):>7.4f}  {number('test_accuracy'):>8.4f}  {result.seconds:>7.1f}  "
              f"{result.diverged}", file=report)
    # Configurations train one after another (`study` is one `train` each): the wall time is
    # their seconds plus what lies outside each build-and-fit.
    print(f"wall time {wall:.1f} s (sum of per-configuration seconds {sum(r.seconds for r in results):.1f} s)",
          file=report, flush=True)
    if args.json and not write_json(args.json, [_payload(result) for result in results]):
        return 1
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    try:
        target = importlib.import_module(f"mnistlab.{module}")
    except ImportError as error:
        raise UsageError(f"the {module} command is not available: {error}") from None
    return int(target.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m mnistlab", description="Train the course's MNIST networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train_parser = commands.add_parser("train", help="train one configuration",
                                       description="Train one configuration with the course's defaults.")
    _add_config_options(train_parser)
    train_parser.add_argument("--json", metavar="PATH",
                              help="write the run as JSON, keys config, initial (epoch-0 values), history, final, "
                                   "seconds, diverged (a file, - for stdout, or a device or FIFO)")
    train_parser.add_argument("--save", metavar="PATH.keras", help="save the trained model (takes raw 0..255 pixels)")
    train_parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    study_parser = commands.add_parser("study",
                                       help="the six-configuration MLP study (1-3 hidden layers x lambda 0, 5)",
                                       description="1, 2, 3 hidden layers x lambda in {0, 5} with the course defaults.")
    _add_config_options(study_parser, study=True)
    study_parser.add_argument("--json", metavar="PATH", help="write the list of results (- for stdout)")
    commands.add_parser("bench", help="benchmark the training paths (see bench --help)", add_help=False)
    commands.add_parser("sweep", help="run a chapter over a parameter grid (see sweep --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in ("bench", "sweep"):
            return _delegate(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return {"train": _train, "study": _study}[args.command](args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
