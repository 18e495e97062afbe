"""Plot and table helpers the book's chapters share: histories, learning speed, confusion, mistakes."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, NullLocator

from .data import NUM_CLASSES

# (row title, history key without the split prefix)
HISTORY_METRICS = (
    ("accuracy", "accuracy"),
    ("loss", "loss"),
    ("zero-one error", "zero_one_error"),
)
# How each split is drawn: history key prefix and line style.
SPLIT_STYLES = {"train": ("", "-"), "val": ("val_", "--"), "test": ("test_", ":")}
SPEED_MEASURES = (
    ("speed", r"$\|\partial C / \partial b^l\|$"),
    ("weight_change", r"mean $|\Delta W / W|$ per epoch"),
)
BOOK_WIDTH = 7.0  # inches; the book shows about 690 px, so a 100-dpi figure keeps its label size


def _layers_title(count) -> str:
    return f"{count} hidden layer" + ("" if count == 1 else "s")


def _epochs(values) -> np.ndarray:
    return np.arange(1, len(values) + 1)


def _values(history: dict, key: str) -> np.ndarray:
    # A diverged run stores None for NaN and infinity.
    return np.array([np.nan if v is None else v for v in history.get(key, [])], dtype=float)


def _check_splits(splits) -> None:
    unknown = [split for split in splits if split not in SPLIT_STYLES]
    if unknown or not splits:
        raise ValueError(f"splits must be some of {', '.join(SPLIT_STYLES)}, got {list(splits)!r}")


def _split_lines(ax, history: dict, key: str, splits, colour, label: str) -> None:
    for split in splits:
        prefix, style = SPLIT_STYLES[split]
        values = _values(history, prefix + key)
        ax.plot(_epochs(values), values, style, color=colour, label=f"{label}, {split}")


def plot_history_grid(results, column_key: str = "hidden_layers", line_key: str = "l2_lambda",
                      metrics=HISTORY_METRICS, column_title=_layers_title,
                      line_label: str = "λ = {:g}", log_loss: bool = False, splits=("train", "val")):
    """Small multiples: one row per metric, one column per value of `column_key` in the configs,
    one colour per value of `line_key`, one line style per split (solid training, dashed
    validation, dotted test). `column_title` turns a column's value into its title;
    `log_loss` puts the loss row on a log scale."""
    if not results:
        raise ValueError("results must not be empty")
    _check_splits(splits)
    columns = sorted({getattr(r.config, column_key) for r in results})
    lines = sorted({getattr(r.config, line_key) for r in results})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = plt.subplots(len(metrics), len(columns), figsize=(BOOK_WIDTH, 2.3 * len(metrics) + 0.6),
                                sharex=True, sharey="row", squeeze=False)
    for result in results:
        column = columns.index(getattr(result.config, column_key))
        colour = colours[lines.index(getattr(result.config, line_key)) % len(colours)]
        label = line_label.format(getattr(result.config, line_key))
        for row, (_, key) in enumerate(metrics):
            _split_lines(axes[row, column], result.history, key, splits, colour, label)
    for row, (title, _) in enumerate(metrics):
        axes[row, 0].set_ylabel(title)
        for ax in axes[row]:
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if log_loss and title == "loss":
                ax.set_yscale("log")
    for column, value in enumerate(columns):
        axes[0, column].set_title(column_title(value))
        axes[-1, column].set_xlabel("epoch")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    return figure


def plot_curves(results, labels, metrics=HISTORY_METRICS, log_loss: bool = False, splits=("train", "val")):
    """One panel per metric, one colour per result, one line style per split (as `plot_history_grid`)."""
    if len(results) != len(labels):
        raise ValueError(f"got {len(results)} results but {len(labels)} labels")
    _check_splits(splits)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(BOOK_WIDTH, 3.2), squeeze=False)
    for index, (result, label) in enumerate(zip(results, labels)):
        for ax, (_, key) in zip(axes[0], metrics):
            _split_lines(ax, result.history, key, splits, colours[index % len(colours)], label)
    for ax, (title, _) in zip(axes[0], metrics):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_loss and title == "loss":
            ax.set_yscale("log")
    handles, legend_labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="lower center", ncol=min(4, len(legend_labels)), frameon=False)
    figure.tight_layout(rect=(0, 0.1 if len(legend_labels) <= 4 else 0.17, 1, 1))
    return figure


def plot_learning_speed(results, measures=SPEED_MEASURES, column_title=_layers_title):
    """Learning speed of every hidden layer per epoch on a log scale: rows = measure, columns = depth.

    Epoch 0 is initialisation (`Result.initial`); the weight changes are only defined after
    an epoch, so they start at epoch 1.
    """
    results = [r for r in results if r.config.hidden_layers > 0]
    if not results:
        raise ValueError("need at least one result with hidden layers")
    figure, axes = plt.subplots(len(measures), len(results), figsize=(BOOK_WIDTH, 2.6 * len(measures) + 0.6),
                                sharex=True, sharey="row", squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    most_layers = max(r.config.hidden_layers for r in results)
    for column, result in enumerate(results):
        for row, (measure, _) in enumerate(measures):
            ax = axes[row, column]
            for k in range(1, result.config.hidden_layers + 1):
                key = f"{measure}_hidden_{k}"
                values = _values({key: result.trajectory(key)}, key)
                epochs = np.arange(len(values))
                # A log axis cannot show zero (a layer that did not move); leave a gap instead.
                values[values <= 0] = np.nan
                keep = np.isfinite(values) | (epochs > 0)  # epoch 0 only where it has a value
                ax.plot(epochs[keep], values[keep], color=colours[k - 1], marker=".", markersize=3,
                        label=f"hidden layer {k}")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
        axes[0, column].set_title(column_title(result.config.hidden_layers))
        axes[-1, column].set_xlabel("epoch")
    for row, (_, label) in enumerate(measures):
        axes[row, 0].set_ylabel(label)
    widest = next(c for c, r in enumerate(results) if r.config.hidden_layers == most_layers)
    handles, labels = axes[0, widest].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    return figure


def plot_speed_comparison(measured: dict, published: dict, spread: dict | None = None,
                          measured_label: str = "ours", published_label: str = "Nielsen (published)",
                          others: dict | None = None):
    """Speed of each hidden layer at initialisation, ours next to published, one panel per depth.

    `measured` and `published` map a number of hidden layers to per-layer speeds;
    `spread` (optional) maps it to per-layer standard deviations shown as error bars;
    `others` (optional) maps a label to a further such mapping, drawn as triangles.
    """
    depths = sorted(measured)
    figure, axes = plt.subplots(1, len(depths), figsize=(BOOK_WIDTH, 3.0), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        layers = np.arange(1, depth + 1)
        ax.errorbar(layers - 0.08, measured[depth], yerr=None if spread is None else spread[depth], fmt="o",
                    capsize=3, label=measured_label)
        if depth in published:
            ax.plot(layers + 0.08, published[depth], "s", label=published_label)
        for index, (label, values) in enumerate((others or {}).items()):
            ax.plot(layers, values[depth], "^", color=f"C{index + 2}", label=label)
        ax.set_yscale("log")
        ax.set_xticks(layers)
        ax.set_xlabel("hidden layer")
        ax.set_title(_layers_title(depth))
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel(r"$\|\partial C / \partial b^l\|$ at initialisation")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=8)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return figure


def plot_steps(records, labels):
    """The first mini-batch steps of several setups (records from `diagnostics.first_steps`), log scales:
    training loss, mean |dW| per step, and root-mean-square weight (step 0 = initialisation)."""
    if len(records) != len(labels):
        raise ValueError(f"got {len(records)} records but {len(labels)} labels")
    figure, axes = plt.subplots(1, 3, figsize=(BOOK_WIDTH, 3.2))
    for record, label in zip(records, labels):
        steps = np.arange(1, len(record["loss"]) + 1)
        axes[0].plot(steps, record["loss"], label=label)
        axes[1].plot(steps, record["step"], label=label)
        axes[2].plot(np.arange(len(steps) + 1), [record["initial_weight"]] + list(record["weight"]), label=label)
    titles = ("mini-batch loss", "mean |ΔW| per step", "RMS of the weights")
    for ax, title in zip(axes, titles):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    handles, legend_labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="lower center", ncol=min(4, len(legend_labels)), frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return figure


def confusion_matrix(labels, predictions, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, title: str = "held-out confusion matrix"):
    """The matrix as a heat map with every count written in; the diagonal holds the hits."""
    matrix = np.asarray(matrix)
    figure, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            ax.text(column, row, str(count), ha="center", va="center", fontsize=8,
                    color="white" if count > threshold else "black")
    ticks = np.arange(matrix.shape[0])
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure


def plot_digits(images, titles=None, columns: int = 8, fontsize: int = 9):
    """A grid of 28 x 28 images (dark ink on white), with an optional title above each."""
    images = np.asarray(images)
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(BOOK_WIDTH, 1.35 * rows + 0.2), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for index, ax in enumerate(axes.ravel()[:len(images)]):
        ax.imshow(images[index].reshape(28, 28), cmap="gray_r")
        if titles is not None:
            ax.set_title(titles[index], fontsize=fontsize)
    figure.tight_layout()
    return figure


def plot_misclassified(images, labels, predictions, probabilities=None, max_images: int = 24, columns: int = 8):
    """A gallery of the misclassified images, titled 'true → predicted' (and the predicted probability)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    wrong = np.flatnonzero(labels != predictions)[:max_images]
    titles = [f"{labels[i]} → {predictions[i]}"
              + (f" ({probabilities[i, predictions[i]]:.2f})" if probabilities is not None else "") for i in wrong]
    figure = plot_digits(np.asarray(images)[wrong], titles, columns)
    if not len(wrong):
        figure.axes[0].set_title("no misclassified images")
    return figure


class Table:
    """The one table renderer: HTML in the book, aligned text in plain outputs, Markdown on request."""

    def __init__(self, columns, rows, precision: int = 3):
        self.columns = [str(c) for c in columns]
        self.rows = [[self._format(v, precision) for v in row] for row in rows]
        if any(len(row) != len(self.columns) for row in self.rows):
            raise ValueError(f"every row needs {len(self.columns)} values")

    @classmethod
    def from_records(cls, records, columns=None, precision: int = 3) -> "Table":
        """A table of dicts (e.g. a sweep's rows): `columns` picks and orders the keys (default: the first row's)."""
        records = list(records)
        columns = list(records[0]) if columns is None and records else list(columns or [])
        return cls(columns, [[record.get(column) for column in columns] for record in records], precision)

    @staticmethod
    def _format(value, precision):
        if value is None:
            return "–"
        if isinstance(value, (float, np.floating)):
            return "nan" if not np.isfinite(value) else f"{value:.{precision}f}"
        return str(value)

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) if self.rows else len(c)
                  for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in self.rows]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """A pipe table; `|` inside a cell is escaped."""
        def cells(values):
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

        return "\n".join([cells(self.columns), "|" + "---|" * len(self.columns)] + [cells(row) for row in self.rows])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plot_seed_spread(x_values, series: dict, xlabel: str, ylabel: str, xscale: str = "linear", ax=None):
    """One line per series through the means across seeds, with every seed's value as a dot.

    `series` maps a label to one list of per-seed values for each of `x_values`; `xscale` is
    any Matplotlib scale ("log", or "symlog" when an x value is 0). Returns the axes.
    """
    x_values = list(x_values)
    if ax is None:
        _, ax = plt.subplots(figsize=(BOOK_WIDTH / 2, 3.0))
    for index, (label, per_x) in enumerate(series.items()):
        per_x = [np.asarray(values, dtype=float) for values in per_x]
        if len(per_x) != len(x_values) or any(values.size == 0 for values in per_x):
            raise ValueError(f"series {label!r} needs values for each of the {len(x_values)} x values")
        colour = f"C{index}"
        for x, values in zip(x_values, per_x):
            ax.scatter([x] * values.size, values, s=12, color=colour, alpha=0.5, zorder=2)
        ax.plot(x_values, [values.mean() for values in per_x], "-o", color=colour, markersize=4, label=label,
                zorder=3)
    if xscale == "symlog":
        positive = [x for x in x_values if x > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    else:
        ax.set_xscale(xscale)
    ax.set_xticks(x_values)
    ax.set_xticklabels([f"{x:g}" for x in x_values])
    ax.xaxis.set_minor_locator(NullLocator())  # the x values are the only ticks, also on log scales
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax
