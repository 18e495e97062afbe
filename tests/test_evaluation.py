"""Final evaluation: binomial intervals against known values, accuracy and loss against NumPy, the full test set."""

import numpy as np
import pytest

import mnistlab as ml
from mnistlab import data as data_module


def test_wilson_interval_known_values():
    # Wilson's 95% interval for 50 of 100 and for 0 of 10 (Newcombe 1998, Table I: 0.4038-0.5962, 0-0.2775).
    assert ml.binomial_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert ml.binomial_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    low, high = ml.binomial_interval(0.85, 1000)
    assert 0.02 < (high - low) / 2 < 0.025  # "about plus or minus 2 points" on 1,000 images
    assert high - low > ml.binomial_interval(0.85, 1000, confidence=0.9)[1] - ml.binomial_interval(0.85, 1000, 0.9)[0]


@pytest.mark.parametrize("accuracy, count, confidence, message", [
    (1.5, 100, 0.95, "accuracy"), (0.5, 0, 0.95, "count"), (0.5, 10.0, 0.95, "count"), (0.5, 10, 1.0, "confidence"),
])
def test_interval_refuses_bad_arguments(accuracy, count, confidence, message):
    with pytest.raises(ValueError, match=message):
        ml.binomial_interval(accuracy, count, confidence)


def test_evaluate_matches_numpy_and_the_history(tiny_data):
    result = ml.train(ml.Config(per_class=5, epochs=2, hidden_layers=1, l2_lambda=5.0), tiny_data)
    report = ml.evaluate(result.model, tiny_data.x_test, tiny_data.y_test)
    probabilities = result.model.predict(tiny_data.x_test, verbose=0).astype(np.float64)
    correct = int(np.sum(np.argmax(probabilities, axis=1) == tiny_data.y_test))
    assert report["correct"] == correct and report["count"] == 50 and report["accuracy"] == correct / 50
    assert report["accuracy"] == result.final["test_accuracy"]
    assert report["cross_entropy"] == pytest.approx(
        -np.mean(np.log(probabilities[np.arange(50), tiny_data.y_test])), rel=1e-5)
    assert report["loss"] == pytest.approx(result.history["test_loss"][-1], rel=1e-6)
    assert report["interval"] == pytest.approx(list(ml.binomial_interval(correct / 50, 50)))
    with pytest.raises(ValueError, match="labels"):
        ml.evaluate(result.model, tiny_data.x_test, tiny_data.y_test + 10)


def test_full_test_evaluation_on_a_tiny_fake(tiny_data, monkeypatch):
    result = ml.train(ml.Config(per_class=5, epochs=1, hidden_layers=1), tiny_data)
    fake = (tiny_data.x_val[:7], tiny_data.y_val[:7])
    monkeypatch.setattr(data_module, "load_full_test", lambda source="bundled": fake)
    report = ml.evaluate_full_test(result.model)
    assert report["count"] == 7 and report == ml.evaluate(result.model, *fake)


def test_full_test_evaluation_on_the_bundled_test_set(tiny_data):
    result = ml.train(ml.Config(per_class=5, epochs=1, hidden_layers=1), tiny_data)
    report = ml.evaluate_full_test(result.model)
    assert report["count"] == 10_000 and 0.0 <= report["interval"][0] <= report["accuracy"] <= report["interval"][1]
