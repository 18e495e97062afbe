import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

import mnistlab as ml

TINY = ml.Config(per_class=5, epochs=2, hidden_layers=2)


def test_defaults_are_the_corrected_course_settings():
    config = ml.Config()
    assert (config.optimizer, config.learning_rate, config.batch_size, config.epochs) == ("sgd", 0.1, 10, 30)
    assert (config.l2_lambda, config.l2_convention, config.units, config.activation) == (5.0, "nielsen", 30, "sigmoid")
    assert (config.per_class, config.seed, config.source, config.model) == (100, 0, "bundled", "mlp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


@pytest.mark.parametrize("field, value, message", [
    ("epochs", -1, "epochs must be a whole number >= 0"),
    ("hidden_layers", -1, "hidden_layers must be"),
    ("batch_size", 0, "batch_size must be"),
    ("optimizer", "adagrad", "sgd, momentum, adam"),
    ("per_class", 1000, "between 1 and 431"),
    ("learning_rate", 0.0, "learning_rate must be"),
    ("l2_lambda", math.nan, "l2_lambda must be"),
    ("model", "rnn", "mlp, cnn"),
    ("epochs", 2.5, "whole number"),
])
def test_bad_config_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ml.Config(), **{field: value})


def test_result_carries_everything(tiny_data):
    result = ml.train(TINY, tiny_data)
    assert result.config == TINY and not result.diverged and result.seconds > 0
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "zero_one_error", "val_zero_one_error"):
        assert len(result.history[key]) == TINY.epochs
    for k in (1, 2):
        assert len(result.history[f"speed_hidden_{k}"]) == TINY.epochs + 1
        assert len(result.history[f"weight_change_hidden_{k}"]) == TINY.epochs + 1
    assert result.final["test_accuracy"] == pytest.approx(1 - result.history["val_zero_one_error"][-1])
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["config"]["hidden_layers"] == 2 and set(payload) == {"config", "history", "final", "seconds",
                                                                         "diverged"}


def test_same_seed_bit_identical_history(tiny_data):
    first = ml.train(TINY, tiny_data).history
    second = ml.train(TINY, tiny_data).history
    other = ml.train(dataclasses.replace(TINY, seed=1), tiny_data).history
    assert first == second
    assert first != other


def test_training_learns(tiny_data):
    result = ml.train(dataclasses.replace(TINY, hidden_layers=1, epochs=5, l2_lambda=0.0), tiny_data)
    assert result.final["train_accuracy"] > 0.5
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_diverged_run_is_reported(tiny_data):
    config = dataclasses.replace(TINY, activation="relu", learning_rate=1e8, epochs=10)
    result = ml.train(config, tiny_data)
    assert result.diverged and len(result.history["loss"]) < 10
    json.dumps(result.to_dict(), allow_nan=False)  # NaN and infinity become null


def test_study_runs_the_six_configurations(tiny_data):
    results = ml.study(dataclasses.replace(TINY, epochs=1), tiny_data)
    assert [(r.config.hidden_layers, r.config.l2_lambda) for r in results] == ml.STUDY_GRID
    assert len(ml.STUDY_GRID) == 6


@pytest.mark.parametrize("given, expected", [(None, "1"), ("2", "2")])
def test_import_sets_one_thread_per_op_unless_the_user_chose(given, expected):
    environment = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    if given is not None:
        environment["TF_NUM_INTRAOP_THREADS"] = given
    code = "import os, mnistlab; print(os.environ['TF_NUM_INTRAOP_THREADS'])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == expected
