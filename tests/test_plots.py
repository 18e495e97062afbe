"""Plot helpers: figures have the promised panels and lines; the confusion matrix and table count right."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mnistlab as ml  # noqa: E402
from mnistlab import plots  # noqa: E402


def _fake_result(hidden_layers, l2_lambda, epochs=4, seed=0):
    rng = np.random.default_rng(seed + 10 * hidden_layers + int(l2_lambda))
    history = {prefix + key: list(rng.random(epochs)) for key in ("loss", "accuracy", "zero_one_error")
               for prefix in ("", "val_", "test_")}
    initial = {}
    for k in range(1, hidden_layers + 1):
        initial[f"speed_hidden_{k}"] = float(rng.random() + 0.01)
        history[f"speed_hidden_{k}"] = list(rng.random(epochs) + 0.01)
        history[f"weight_change_hidden_{k}"] = list(rng.random(epochs) + 0.01)
    config = ml.Config(hidden_layers=hidden_layers, l2_lambda=l2_lambda, epochs=epochs)
    return ml.Result(config, history, {}, 0.0, False, initial)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_confusion_matrix_matches_a_hand_count():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=500)
    predictions = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 10, size=500))
    matrix = plots.confusion_matrix(labels, predictions)
    expected = np.zeros((10, 10), dtype=int)
    for true, predicted in zip(labels, predictions):
        expected[true, predicted] += 1
    assert np.array_equal(matrix, expected)
    assert matrix.sum() == 500 and np.trace(matrix) == np.sum(labels == predictions)
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_matrix(labels, predictions[:-1])
    with pytest.raises(ValueError, match="0..9"):
        plots.confusion_matrix([10], [0])


def test_history_grid_has_a_panel_per_metric_and_depth_and_two_lines_per_run():
    results = [_fake_result(h, lam) for h in (1, 2, 3) for lam in (0.0, 5.0)]
    figure = plots.plot_history_grid(results)
    axes = np.array(figure.axes).reshape(3, 3)
    assert [ax.get_title() for ax in axes[0]] == ["1 hidden layer", "2 hidden layers", "3 hidden layers"]
    for ax in axes.ravel():
        assert len(ax.lines) == 4  # two lambdas x train/validation
    first, second = axes[0, 0].lines[:2]
    assert np.allclose(first.get_ydata(), results[0].history["accuracy"])
    assert np.allclose(second.get_ydata(), results[0].history["val_accuracy"]) and second.get_linestyle() == "--"
    assert list(first.get_xdata()) == [1, 2, 3, 4]
    assert first.get_label() == "λ = 0, train" and second.get_label() == "λ = 0, val"


def test_history_grid_can_draw_the_test_split():
    figure = plots.plot_history_grid([_fake_result(1, 0.0)], splits=("train", "val", "test"))
    lines = figure.axes[2].lines
    assert len(lines) == 3 and lines[2].get_linestyle() == ":"
    assert np.allclose(lines[2].get_ydata(), _fake_result(1, 0.0).history["test_zero_one_error"])
    with pytest.raises(ValueError, match="splits"):
        plots.plot_history_grid([_fake_result(1, 0.0)], splits=("holdout",))


def test_history_grid_log_loss_scales_only_the_loss_row():
    figure = plots.plot_history_grid([_fake_result(1, 0.0)], log_loss=True)
    assert [ax.get_yscale() for ax in figure.axes] == ["linear", "log", "linear"]


def test_history_grid_shows_a_diverged_run_as_gaps():
    result = _fake_result(1, 0.0)
    result.history["loss"][2] = None
    figure = plots.plot_history_grid([result])
    loss_line = figure.axes[1].lines[0]
    assert np.isnan(loss_line.get_ydata()[2])


def test_learning_speed_plot_is_log_scaled_with_a_line_per_layer():
    results = [_fake_result(h, 0.0) for h in (1, 2, 3)]
    figure = plots.plot_learning_speed(results)
    axes = np.array(figure.axes).reshape(2, 3)
    assert all(ax.get_yscale() == "log" for ax in axes.ravel())
    assert [len(ax.lines) for ax in axes[0]] == [1, 2, 3]
    speed = axes[0, 2].lines[2]
    assert list(speed.get_xdata()) == [0, 1, 2, 3, 4]  # epoch 0 from Result.initial
    assert np.allclose(speed.get_ydata(), results[2].trajectory("speed_hidden_3"))
    change = axes[1, 0].lines[0]
    assert list(change.get_xdata()) == [1, 2, 3, 4]  # no weight change at initialisation
    assert np.allclose(change.get_ydata(), results[0].history["weight_change_hidden_1"])
    with pytest.raises(ValueError, match="hidden layers"):
        plots.plot_learning_speed([_fake_result(0, 0.0)])


def test_learning_speed_plot_leaves_gaps_for_zero_speeds():
    result = _fake_result(1, 0.0)
    result.history["weight_change_hidden_1"][1] = 0.0
    figure = plots.plot_learning_speed([result])
    change = figure.axes[1].lines[0].get_ydata()
    assert np.isnan(change[1]) and np.all(np.isfinite(np.delete(change, 1)))


def test_curves_and_speed_comparison():
    results = [_fake_result(1, 0.0), _fake_result(2, 0.0)]
    figure = plots.plot_curves(results, ["a", "b"], log_loss=True)
    assert len(figure.axes) == 3 and all(len(ax.lines) == 4 for ax in figure.axes)
    assert figure.axes[1].get_yscale() == "log"
    with pytest.raises(ValueError, match="labels"):
        plots.plot_curves(results, ["a"])
    figure = plots.plot_speed_comparison({2: [0.1, 0.3], 3: [0.01, 0.05, 0.2]},
                                         {2: (0.07, 0.31), 3: (0.012, 0.06, 0.283)},
                                         spread={2: [0.01, 0.02], 3: [0.001, 0.01, 0.02]},
                                         others={"softmax": {2: [0.01, 0.05], 3: [0.002, 0.01, 0.05]}})
    assert len(figure.axes) == 2 and figure.axes[0].get_yscale() == "log"
    assert [line.get_label() for line in figure.axes[1].lines][-1] == "softmax"
    assert list(figure.axes[1].lines[-1].get_ydata()) == [0.002, 0.01, 0.05]


def test_step_plot_starts_the_weights_at_initialisation():
    record = {"loss": [3.0, 2.0], "step": [0.1, 0.05], "weight": [0.2, 0.3], "initial_weight": 0.05}
    figure = plots.plot_steps([record, record], ["a", "b"])
    assert len(figure.axes) == 3 and all(ax.get_yscale() == "log" for ax in figure.axes)
    weights = figure.axes[2].lines[0]
    assert list(weights.get_xdata()) == [0, 1, 2] and list(weights.get_ydata()) == [0.05, 0.2, 0.3]
    with pytest.raises(ValueError, match="labels"):
        plots.plot_steps([record], ["a", "b"])


def test_misclassified_gallery_shows_only_mistakes():
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5])
    predictions = np.array([0, 7, 2, 3, 9, 5])
    probabilities = np.full((6, 10), 0.1)
    figure = plots.plot_misclassified(images, labels, predictions, probabilities, columns=4)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["1 → 7 (0.10)", "4 → 9 (0.10)"]
    figure = plots.plot_misclassified(images, labels, labels)
    assert figure.axes[0].get_title() == "no misclassified images"


def test_digit_grid_has_one_panel_per_image_and_hides_the_rest():
    images = np.arange(5 * 784).reshape(5, 28, 28) % 256
    figure = plots.plot_digits(images, [str(i) for i in range(5)], columns=4)
    assert len(figure.axes) == 8
    shown = [ax for ax in figure.axes if ax.images]
    assert len(shown) == 5 and np.array_equal(shown[2].images[0].get_array(), images[2])
    assert [ax.get_title() for ax in shown] == ["0", "1", "2", "3", "4"]


def test_table_text_and_html():
    table = plots.Table(["depth", "accuracy"], [[1, 0.84321], [2, None]])
    assert repr(table).splitlines() == ["depth  accuracy", "    1     0.843", "    2         –"]
    assert "<td>0.843</td>" in table._repr_html_()
    assert "&lt;b&gt;" in plots.Table(["<b>"], [["x"]])._repr_html_()
    with pytest.raises(ValueError, match="every row"):
        plots.Table(["a", "b"], [[1]])


def test_table_markdown_and_records():
    table = plots.Table.from_records([{"depth": 1, "a|b": 0.5, "skip": 3}, {"depth": 2, "a|b": None}], ["depth", "a|b"])
    assert table.to_markdown().splitlines() == ["| depth | a\\|b |", "|---|---|", "| 1 | 0.500 |", "| 2 | – |"]
    assert repr(plots.Table.from_records([{"x": 1.23456}], precision=2)).splitlines() == ["   x", "1.23"]
    assert plots.Table.from_records([]).columns == []


def test_seed_spread_draws_a_mean_line_and_a_dot_per_seed():
    series = {"1 layer": [[0.80, 0.82], [0.85, 0.87], [0.90, 0.92]], "3 layers": [[0.7, 0.8], [0.8, 0.8], [0.85, 0.9]]}
    ax = plots.plot_seed_spread([100, 200, 400], series, "images per digit", "accuracy", xscale="log")
    lines = ax.get_lines()
    assert len(lines) == 2
    assert np.allclose(lines[0].get_ydata(), [0.81, 0.86, 0.91])
    assert sum(len(collection.get_offsets()) for collection in ax.collections) == 12  # 2 series x 3 x 2 seeds
    assert ax.get_xscale() == "log"
    symlog = plots.plot_seed_spread([0.0, 0.1, 5.0], {"a": [[1.0], [2.0], [3.0]]}, "λ", "y", xscale="symlog")
    assert symlog.get_xscale() == "symlog"
    with pytest.raises(ValueError, match="needs values"):
        plots.plot_seed_spread([1, 2], {"a": [[1.0]]}, "x", "y")
