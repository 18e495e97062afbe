import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import mnistlab as ml
from mnistlab.cli import main

TINY = ["--per-class", "5", "--epochs", "2"]


def test_train_writes_json_and_a_model_that_takes_raw_pixels(tmp_path, capsys, tiny_data):
    json_path, model_path = tmp_path / "run.json", tmp_path / "model.keras"
    assert main(["train", *TINY, "--hidden-layers", "2", "--json", str(json_path), "--save", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 2 and "test accuracy" in out
    payload = json.loads(json_path.read_text())
    assert set(payload) == {"config", "initial", "history", "final", "seconds", "diverged"}
    assert payload["config"]["hidden_layers"] == 2 and payload["config"]["epochs"] == 2
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "zero_one_error", "val_zero_one_error",
                "speed_hidden_1", "speed_hidden_2", "weight_change_hidden_1", "weight_change_hidden_2"):
        assert key in payload["history"]
    model = keras.models.load_model(model_path)
    probabilities = model.predict_on_batch(tiny_data.x_test)
    assert probabilities.shape == (50, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.mean(probabilities.argmax(axis=1) == tiny_data.y_test) == pytest.approx(payload["final"]["test_accuracy"])


def test_cnn_option(tmp_path):
    path = tmp_path / "cnn.json"
    assert main(["train", "--model", "cnn", "--per-class", "2", "--epochs", "1", "--optimizer", "adam",
                 "--learning-rate", "0.001", "--quiet", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["config"]["model"] == "cnn"


@pytest.mark.parametrize("arguments, message", [
    (["--epochs", "-1"], "epochs must be"),
    (["--hidden-layers", "-2"], "hidden_layers must be"),
    (["--batch-size", "0"], "batch_size must be"),
    (["--optimizer", "lion"], "sgd, momentum, adam"),
    (["--per-class", "5000"], "between 1 and 431"),
    (["--epochs", "many"], "invalid int value"),
    (["--json", "/nonexistent-dir/run.json"], "does not exist"),
    (["--save", "model.h5"], "must end with .keras"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(arguments, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--json", "out.json", *arguments] if "--json" not in arguments else ["train", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_output_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    assert main(["train", *TINY, "--json", str(blocker / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_output_path_that_is_a_directory(tmp_path, capsys):
    assert main(["train", *TINY, "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_study_prints_a_table_and_writes_six_results(tmp_path, capsys):
    path = tmp_path / "study.json"
    assert main(["study", "--per-class", "3", "--epochs", "1", "--json", str(path)]) == 0
    results = json.loads(path.read_text())
    assert [(r["config"]["hidden_layers"], r["config"]["l2_lambda"]) for r in results] == ml.STUDY_GRID
    table = capsys.readouterr().out
    assert "test acc" in table and len([line for line in table.splitlines() if line.strip()[:1].isdigit()]) == 6


def test_module_entry_point_help_and_bad_input():
    completed = subprocess.run([sys.executable, "-m", "mnistlab", "train", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0
    for option in ("--model", "--hidden-layers", "--units", "--activation", "--l2-lambda", "--l2-convention",
                   "--optimizer", "--learning-rate", "--batch-size", "--epochs", "--per-class", "--init",
                   "--source", "--seed", "--json", "--save"):
        assert option in completed.stdout
    completed = subprocess.run([sys.executable, "-m", "mnistlab", "train", "--epochs", "-3"], capture_output=True,
                               text=True)
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: epochs must be a whole number >= 0, got -3"
