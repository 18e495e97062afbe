"""Shared tiny fixtures: a few images per class keeps the unit suite fast."""

import pytest

import mnistlab as ml


@pytest.fixture(scope="session")
def tiny_data():
    return ml.load_course_data(per_class=5)
