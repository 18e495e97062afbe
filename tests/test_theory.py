"""Checks of mnistlab.theory against independent NumPy computations on tiny data."""

import keras
import numpy as np
import pytest

import mnistlab as ml
from mnistlab import theory


@pytest.fixture(scope="module")
def data():
    return ml.load_course_data(per_class=5)


def test_softmax_rows_sum_to_one_and_survive_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probabilities = theory.softmax(logits)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.isfinite(probabilities).all()
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    assert np.allclose(probabilities[1], expected)


def test_negative_log_likelihood_by_hand():
    logits = np.array([[0.0, np.log(3.0)], [0.0, 0.0]])
    # probabilities [1/4, 3/4] and [1/2, 1/2]; labels 1 and 0
    expected = -(np.log(0.75) + np.log(0.5)) / 2
    assert theory.negative_log_likelihood(logits, np.array([1, 0])) == pytest.approx(expected)
    with pytest.raises(ValueError, match="one label per row"):
        theory.negative_log_likelihood(logits, np.array([1]))


def test_logits_reproduce_model_probabilities(data):
    ml.set_seed(0)
    model = ml.build_mlp(data.x_train, hidden_layers=2)
    logits = theory.logits_of(model, data.x_train)
    assert logits.shape == (len(data.x_train), 10)
    assert np.abs(theory.softmax(logits) - model.predict(data.x_train, verbose=0)).max() < 1e-5


def test_keras_loss_and_gradient_match_the_formulas(data):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(len(data.y_train), 10))
    loss, gradient = theory.keras_loss_and_logit_gradient(logits, data.y_train)
    assert loss == pytest.approx(theory.negative_log_likelihood(logits, data.y_train), rel=1e-6)
    # Keras clips probabilities at 1e-7, so agreement is to about 1e-7 relative, not to machine precision.
    assert np.allclose(gradient, theory.logit_gradient(logits, data.y_train), rtol=1e-5, atol=1e-8)


def test_ridge_solution_is_the_maximum_of_the_log_posterior():
    rng = np.random.default_rng(0)
    design = rng.normal(size=(40, 3))
    targets = design @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.5, size=40)
    ridge = theory.ridge_solution(design, targets, alpha=2.0, noise_variance=0.25)
    climbed, trace = theory.map_by_gradient_ascent(design, targets, 2.0, 0.25, learning_rate=0.002, num_steps=3000)
    assert np.abs(ridge - climbed).max() < 1e-8
    assert all(later >= earlier - 1e-12 for earlier, later in zip(trace, trace[1:]))
    # Any nearby point has a lower log posterior than the closed form.
    best = theory.log_posterior(ridge, design, targets, 2.0, 0.25)
    for _ in range(20):
        assert theory.log_posterior(ridge + rng.normal(scale=0.01, size=3), design, targets, 2.0, 0.25) < best
    with pytest.raises(ValueError):
        theory.ridge_solution(design, targets, alpha=0.0, noise_variance=1.0)


def _sgd_model(data, l2):
    ml.set_seed(0)
    model = ml.build_mlp(data.x_train, hidden_layers=1, l2=l2)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy")
    return model


def test_one_sgd_step_is_nielsens_weight_decay(data):
    n = data.num_train
    model = _sgd_model(data, ml.l2_coefficient(5.0, n))
    differences = theory.weight_decay_step_difference(model, data.x_train[:10], data.y_train[:10], 5.0, n, 0.1)
    assert len(differences) == 4
    assert max(differences.values()) < 1e-6


def test_the_check_fails_for_the_literal_keras_coefficient(data):
    n = data.num_train
    model = _sgd_model(data, 5.0)
    differences = theory.weight_decay_step_difference(model, data.x_train[:10], data.y_train[:10], 5.0, n, 0.1)
    assert max(differences.values()) > 1e-3
