import dataclasses
import json

import numpy as np
import pytest

import mnistlab as ml


def test_numpy_numbers_become_python_numbers_so_results_serialise():
    config = ml.Config(hidden_layers=np.int64(2), units=np.int32(7), epochs=np.int16(3), seed=np.uint32(5),
                       per_class=np.int64(4), l2_lambda=np.float32(0.5), learning_rate=np.float64(0.05),
                       batch_size=np.int64(8))
    payload = json.loads(json.dumps(config.to_dict()))
    assert payload["hidden_layers"] == 2 and payload["seed"] == 5 and payload["l2_lambda"] == 0.5
    assert all(type(getattr(config, name)) is int
               for name in ("hidden_layers", "units", "epochs", "seed", "per_class", "batch_size"))
    assert type(config.l2_lambda) is float and type(config.learning_rate) is float


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64, 1.0, "3", True])
def test_seed_range(seed):
    with pytest.raises(ValueError, match="seed must be a whole number between 0 and 4294967295"):
        ml.Config(seed=seed)


def test_largest_seed_is_accepted():
    assert ml.Config(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("field, value, message", [
    ("l2_layers", "output", "choose one of all, hidden"),
    ("l2_lambda", np.float64("nan"), "l2_lambda must be a finite number >= 0"),
    ("learning_rate", True, "learning_rate must be a finite number > 0"),
    ("learning_rate", "0.1", "learning_rate must be a finite number > 0"),
])
def test_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(ml.Config(), **{field: value})


def test_l2_layers_defaults_to_every_kernel():
    assert ml.Config().l2_layers == "all"
