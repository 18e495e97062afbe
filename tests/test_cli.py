"""The command line: outputs, bad values, failures after training and Ctrl-C, as users meet them."""

import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
from read_only import read_only

import mnistlab as ml
from mnistlab.cli import main

TINY = ["--per-class", "5", "--epochs", "2"]


def test_train_writes_json_and_a_model_that_takes_raw_pixels(tmp_path, capsys, tiny_data):
    json_path, model_path = tmp_path / "run.json", tmp_path / "model.keras"
    assert main(["train", *TINY, "--hidden-layers", "2", "--l2-layers", "hidden", "--json", str(json_path),
                 "--save", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 2 and "test accuracy" in out
    payload = json.loads(json_path.read_text())
    # the JSON is whatever Result.to_dict() gives for the same run
    reference = ml.train(ml.Config(hidden_layers=2, l2_layers="hidden", per_class=5, epochs=2), tiny_data)
    assert set(payload) == set(reference.to_dict()) and payload["config"] == reference.config.to_dict()
    assert payload["config"]["l2_layers"] == "hidden" and set(payload["history"]) == set(reference.history)
    assert payload["history"]["loss"] == pytest.approx(reference.history["loss"])
    assert payload["history"]["accuracy"] == pytest.approx(reference.history["accuracy"])
    model = keras.models.load_model(model_path)
    hidden = ml.hidden_layers_of(model)
    assert len(hidden) == 2 and all(layer.kernel_regularizer is not None for layer in hidden)
    assert model.layers[-1].kernel_regularizer is None  # --l2-layers hidden: the output layer is free
    for split in ("val", "test"):
        probabilities = model.predict_on_batch(getattr(tiny_data, f"x_{split}"))
        assert probabilities.shape == (50, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
        accuracy = np.mean(probabilities.argmax(axis=1) == getattr(tiny_data, f"y_{split}"))
        assert accuracy == pytest.approx(payload["final"][f"{split}_accuracy"])


def test_cnn_option_records_the_mlp_options_as_not_applicable(tmp_path):
    path = tmp_path / "cnn.json"
    assert main(["train", "--model", "cnn", "--per-class", "2", "--epochs", "1", "--optimizer", "adam",
                 "--learning-rate", "0.001", "--quiet", "--json", str(path)]) == 0
    config = json.loads(path.read_text())["config"]
    assert config["model"] == "cnn" and config["optimizer"] == "adam"
    assert config["not_applicable"] == ["hidden_layers", "units", "activation", "init"]
    assert not set(config["not_applicable"]) & set(config)


@pytest.mark.parametrize("arguments, shown", [
    (["--units", "64"], "--units does not apply to --model cnn"),
    (["--hidden-layers", "1", "--activation", "relu", "--init", "nielsen"],
     "--hidden-layers, --activation, --init do not apply to --model cnn"),
])
def test_cnn_refuses_options_it_would_ignore(arguments, shown, tmp_path, capsys):
    assert main(["train", "--model", "cnn", *arguments, "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert shown in err and len(err.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


@pytest.mark.parametrize("arguments, message", [
    (["--epochs", "-1"], "epochs must be"),
    (["--hidden-layers", "-2"], "hidden_layers must be"),
    (["--batch-size", "0"], "batch_size must be"),
    (["--optimizer", "lion"], "sgd, momentum, adam"),
    (["--per-class", "5000"], "between 1 and 431"),
    (["--epochs", "many"], "invalid int value"),
    (["--json", "/nonexistent-dir/run.json"], "does not exist"),
    (["--save", "model.h5"], "must end with .keras"),
    (["--per-class", "0"], "per_class must be"),
    (["--seed", str(2**32)], "seed must be"),
    (["--l2-layers", "middle"], "invalid choice: 'middle'"),
    (["--learning-rate", "nan"], "learning_rate must be"),
    (["--model", "cnn", "--units", "3"], "does not apply to --model cnn"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(arguments, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = ["train", *arguments] if "--json" in arguments else ["train", "--json", "out.json", *arguments]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []


def test_output_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    assert main(["train", *TINY, "--json", str(blocker / "x.json")]) == 2
    assert "Not a directory" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_output_path_that_is_a_directory(tmp_path, capsys):
    assert main(["train", *TINY, "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_study_rejects_a_bad_l2_layers_and_per_class_in_one_line(capsys):
    assert main(["study", "--l2-layers", "none"]) == 2
    assert main(["study", "--per-class", "100000"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "invalid choice: 'none'" in lines[0] and "between 1 and" in lines[1]


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


def json_keys() -> list[str]:
    """The keys `--json` writes for a run: those of Result.to_dict()."""
    return list(ml.Result(ml.Config(), {}, {}, 0.0, False).to_dict())


def test_train_help_names_every_json_key(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--help"])
    assert stopped.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    described = help_text.rsplit("--json PATH", 1)[1].split("--save", 1)[0]  # its entry, not the usage
    assert [key for key in json_keys() if key not in described] == []


def test_readme_lists_exactly_the_json_keys():
    import pathlib
    import re

    readme = " ".join((pathlib.Path(__file__).parents[1] / "README.md").read_text().split())
    listed = re.search(r"writes `\{([^}]*)\}` with `--json`", readme)
    assert listed, "README no longer lists the keys --json writes"
    assert re.findall(r'"(\w+)"', listed.group(1)) == json_keys()


# ---------------------------------------------------------------- outputs: links, FIFOs, devices, full disks

def run_cli(*arguments, **options):
    """`python -m mnistlab ...` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "mnistlab", *arguments], capture_output=True, text=True,
                          timeout=300, **options)


def test_json_into_a_fifo_and_save_through_a_symlink(tmp_path):
    fifo = tmp_path / "run.json"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo).read()))
    reader.start()
    models = tmp_path / "models"
    models.mkdir()
    (models / "real.keras").write_text("an older model")
    link = tmp_path / "model.keras"
    link.symlink_to("models/real.keras")
    completed = run_cli("train", "--per-class", "2", "--epochs", "1", "--quiet", "--json", str(fifo),
                        "--save", str(link))
    reader.join(30)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(received[0])["config"]["per_class"] == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert link.is_symlink() and os.readlink(link) == "models/real.keras"
    model = keras.models.load_model(models / "real.keras")
    assert model.output_shape == (None, 10)
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "models", "run.json"]
    assert os.listdir(models) == ["real.keras"]


def test_json_dash_is_stdout_alone_and_the_report_goes_to_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["config"]["per_class"] == 5  # nothing but the JSON: it can be piped
    assert captured.err.count("epoch ") == 2 and "test accuracy" in captured.err
    assert os.listdir(tmp_path) == []


def test_a_full_disk_after_training_prints_the_results_instead(tmp_path, capsys):
    full = tmp_path / "full"  # our own /dev/full: every write fails with ENOSPC, as on a full disk
    try:
        os.mknod(full, 0o666 | stat.S_IFCHR, os.stat("/dev/full").st_rdev)
    except (PermissionError, FileNotFoundError):
        pytest.skip("creating a device node needs root and /dev/full")
    assert main(["train", *TINY, "--quiet", "--json", str(full)]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert f"could not write {full} (No space left on device); the results are printed below" in captured.err
    payload = json.loads(captured.out[captured.out.index("{"):])
    assert payload["config"]["epochs"] == 2 and len(payload["history"]["loss"]) == 2
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_a_model_that_cannot_be_saved_goes_to_a_temporary_folder(tmp_path, capsys, monkeypatch):
    import errno
    import tempfile

    import mnistlab.cli

    def no_space(*arguments, **keywords):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mnistlab.cli, "atomic_path", no_space)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    target = tmp_path / "model.keras"
    assert main(["train", *TINY, "--quiet", "--save", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not save the model to" in err and "No space left on device" in err
    fallback = err.split("saved it to ")[1].split(" instead")[0]
    assert fallback.startswith(str(tmp_path)) and not target.exists()
    assert keras.models.load_model(fallback).output_shape == (None, 10)


def test_read_only_output_is_refused_before_training(tmp_path, capsys):
    protected = tmp_path / "run.json"
    protected.write_text("keep")
    with read_only(protected):
        assert main(["train", *TINY, "--json", str(protected)]) == 2
    err = capsys.readouterr().err
    assert "the file is read-only" in err and "epoch" not in err and protected.read_text() == "keep"


# ---------------------------------------------------------------- odd values that used to give tracebacks

def test_a_batch_larger_than_the_training_set_trains(tmp_path):
    path = tmp_path / "run.json"
    assert main(["train", "--per-class", "2", "--epochs", "2", "--batch-size", "1000", "--quiet",
                 "--json", str(path)]) == 0
    history = json.loads(path.read_text())["history"]
    assert len(history["loss"]) == 2 and all(value is not None for value in history["loss"])


@pytest.mark.parametrize("arguments", [["train", "--units", "1000000000"],
                                       ["train", "--hidden-layers", "3", "--units", "3000000"],
                                       ["study", "--units", "1000000000"]])
def test_a_model_larger_than_memory_is_one_line_before_anything_runs(arguments, capsys):
    assert main([*arguments, "--per-class", "2", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GiB for the weights alone, more than this machine's" in err


def test_running_out_of_memory_while_training_is_one_line(monkeypatch, capsys):
    import tensorflow as tf

    import mnistlab.experiment

    def exhausted(*arguments, **keywords):
        raise tf.errors.ResourceExhaustedError(None, None, "{{function_node __wrapped__X}} OOM when allocating "
                                               "tensor with shape[784,5000000] and type float on /job:localhost")

    monkeypatch.setattr(mnistlab.experiment, "train", exhausted)
    assert main(["train", *TINY]) == 2
    assert capsys.readouterr().err == (
        "error: out of memory (OOM when allocating tensor with shape[784,5000000] and type float); use fewer "
        "--units or --hidden-layers, or a smaller --batch-size or --per-class\n")


@pytest.mark.parametrize("cache", [b"not a zip file at all", "truncated"])
def test_a_corrupt_keras_cache_is_one_line_and_auto_falls_back(cache, tmp_path, monkeypatch, capsys):
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    if cache == "truncated":
        buffer = io.BytesIO()
        np.savez(buffer, x_train=np.zeros((10, 28, 28), np.uint8), y_train=np.arange(10),
                 x_test=np.zeros((10, 28, 28), np.uint8), y_test=np.arange(10))
        cache = buffer.getvalue()[:-100]
    (datasets / "mnist.npz").write_bytes(cache)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert main(["train", "--source", "keras", *TINY, "--json", str(tmp_path / "run.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "mnist.npz" in err
    assert not (tmp_path / "run.json").exists()
    assert main(["train", "--source", "auto", *TINY, "--quiet", "--json", str(tmp_path / "run.json")]) == 0
    assert "bundled" in capsys.readouterr().err
    assert json.loads((tmp_path / "run.json").read_text())["config"]["source"] == "auto"


# ---------------------------------------------------------------- Ctrl-C

def test_ctrl_c_while_tensorflow_loads_and_while_training_is_one_line_exit_130(tmp_path):
    starting = subprocess.Popen([sys.executable, "-m", "mnistlab", "train", *TINY], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # Python is up and TensorFlow (several seconds) is loading
    starting.send_signal(signal.SIGINT)
    out, err = starting.communicate(timeout=60)
    assert (starting.returncode, err, out) == (130, "interrupted\n", "")
    path = tmp_path / "run.json"
    training = subprocess.Popen([sys.executable, "-m", "mnistlab", "train", "--per-class", "2", "--epochs",
                                 "100000", "--json", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    assert training.stdout.readline().startswith("epoch 1/100000")
    training.send_signal(signal.SIGINT)
    out, err = training.communicate(timeout=60)
    assert training.returncode == 130 and err == "interrupted\n" and not path.exists()
