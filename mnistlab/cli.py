"""Command line: `python -m mnistlab train|study|bench|sweep`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from .config import ACTIVATIONS, INITS, L2_CONVENTIONS, MODELS, OPTIMIZERS, STUDY_GRID, Config
from .data import SOURCES
from .files import atomic_path

DEFAULTS = Config()


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage before an error; one actionable line is friendlier.
    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_config_options(parser: argparse.ArgumentParser, study: bool = False) -> None:
    options = parser.add_argument_group("hyperparameters (defaults: the corrected course settings)")
    if not study:
        options.add_argument("--model", choices=MODELS, default=DEFAULTS.model, help="network (default: %(default)s)")
        options.add_argument("--hidden-layers", type=int, default=DEFAULTS.hidden_layers,
                             help="MLP hidden layers, 0 = softmax regression (default: %(default)s)")
        options.add_argument("--l2-lambda", type=float, default=DEFAULTS.l2_lambda,
                             help="L2 strength lambda (default: %(default)s)")
    options.add_argument("--units", type=int, default=DEFAULTS.units, help="units per hidden layer (default: %(default)s)")
    options.add_argument("--activation", choices=ACTIVATIONS, default=DEFAULTS.activation,
                         help="hidden activation (default: %(default)s)")
    options.add_argument("--l2-convention", choices=L2_CONVENTIONS, default=DEFAULTS.l2_convention,
                         help="nielsen: l2(lambda/(2n)); keras: l2(lambda) as written (default: %(default)s)")
    options.add_argument("--optimizer", default=DEFAULTS.optimizer,
                         help=f"one of {', '.join(OPTIMIZERS)} (default: %(default)s)")
    options.add_argument("--learning-rate", type=float, default=DEFAULTS.learning_rate,
                         help="eta (default: %(default)s)")
    options.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="mini-batch size (default: %(default)s)")
    options.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="epochs (default: %(default)s)")
    options.add_argument("--per-class", type=int, default=DEFAULTS.per_class,
                         help="training and test images per digit (default: %(default)s)")
    options.add_argument("--init", choices=INITS, default=DEFAULTS.init, help="weight initialisation (default: %(default)s)")
    options.add_argument("--source", choices=SOURCES, default=DEFAULTS.source, help="data source (default: %(default)s)")
    options.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed (default: %(default)s)")


def _config_from(args: argparse.Namespace, **overrides) -> Config:
    fields = {field.name: getattr(args, field.name) for field in dataclasses.fields(Config) if hasattr(args, field.name)}
    fields.update(overrides)
    try:
        return Config(**fields)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _check_writable(path: str | None, suffix: str | None = None) -> None:
    """Fail before training, not after, when an output path cannot be written."""
    if path is None:
        return
    if suffix and not path.endswith(suffix):
        raise UsageError(f"output path {path!r} must end with {suffix}")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write {path!r}: it is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path!r}: directory {directory!r} is not writable")


def _save_model_atomic(model, path: str) -> None:
    with atomic_path(path, ".keras") as temporary:  # Keras wants the suffix on the file it writes
        model.save(temporary)


def _progress_callback():
    import keras

    class EpochLine(keras.callbacks.Callback):
        """One progress line per epoch."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = "  ".join(f"{key} {float(logs[key]):.4f}" for key in
                              ("loss", "accuracy", "val_loss", "val_accuracy") if key in logs)
            print(f"epoch {epoch + 1}/{self.params.get('epochs', '?')}  {shown}", flush=True)

    return EpochLine()


def _train(args) -> int:
    from .experiment import train, write_json_atomic

    config = _config_from(args)
    _check_writable(args.json)
    _check_writable(args.save, ".keras")
    result = train(config, verbose=0, callbacks=None if args.quiet else [_progress_callback()])
    final = result.final
    print(f"{config.model} hidden_layers={config.hidden_layers} lambda={config.l2_lambda}: "
          f"train accuracy {final.get('train_accuracy', float('nan')):.4f}, "
          f"test accuracy {final.get('test_accuracy', float('nan')):.4f}, "
          f"{result.seconds:.1f} s{', DIVERGED' if result.diverged else ''}")
    if args.json:
        write_json_atomic(args.json, result.to_dict())
    if args.save:
        _save_model_atomic(result.model, args.save)
    return 0


def _study(args) -> int:
    from .experiment import study, write_json_atomic

    base = _config_from(args, model="mlp")
    for hidden_layers, l2_lambda in STUDY_GRID:  # validate every variant before the first fit
        _config_from(args, model="mlp", hidden_layers=hidden_layers, l2_lambda=l2_lambda)
    _check_writable(args.json)
    start = time.perf_counter()
    results = study(base)
    wall = time.perf_counter() - start
    print(f"{'hidden layers':>13}  {'lambda':>6}  {'train acc':>9}  {'test acc':>8}  {'seconds':>7}  diverged")
    for result in results:
        c, f = result.config, result.final
        print(f"{c.hidden_layers:>13}  {c.l2_lambda:>6g}  {f.get('train_accuracy', float('nan')):>9.4f}  "
              f"{f.get('test_accuracy', float('nan')):>8.4f}  {result.seconds:>7.1f}  {result.diverged}")
    # Configurations train two at a time, so their seconds overlap: the wall time is the cost.
    print(f"wall time {wall:.1f} s (sum of per-configuration seconds {sum(r.seconds for r in results):.1f} s)")
    if args.json:
        write_json_atomic(args.json, [result.to_dict() for result in results])
    return 0


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    try:
        target = importlib.import_module(f"mnistlab.{module}")
    except ImportError as error:
        raise UsageError(f"the {module} command is not available: {error}") from None
    return int(target.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mnistlab", description="Train the course's MNIST networks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train_parser = commands.add_parser("train", help="train one configuration",
                                       description="Train one configuration with the course's defaults.")
    _add_config_options(train_parser)
    train_parser.add_argument("--json", metavar="PATH", help="write config, history, final metrics, seconds, diverged")
    train_parser.add_argument("--save", metavar="PATH.keras", help="save the trained model (takes raw 0..255 pixels)")
    train_parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    study_parser = commands.add_parser("study", help="the six-configuration MLP study (1-3 hidden layers x lambda 0, 5)",
                                       description="1, 2, 3 hidden layers x lambda in {0, 5} with the course defaults.")
    _add_config_options(study_parser, study=True)
    study_parser.add_argument("--json", metavar="PATH", help="write the list of results")
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
    except RuntimeError as error:  # e.g. the Keras download failed: still one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
