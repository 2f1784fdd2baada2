# SPDX-License-Identifier: MIT
# Fixtures of the pytest suite of the Python module (ctest pith_python_pytest sets PYTHONPATH to the
# built package, PITH_MODELS_DIR to examples/models and PITH_READ to the built pith-read).
import os

import pytest

import pith

MODELS_DIR = os.environ.get("PITH_MODELS_DIR",
                            os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models"))


@pytest.fixture(scope="session")
def toy_path():
    return os.path.join(MODELS_DIR, "toy-standard")


@pytest.fixture(scope="session")
def model(toy_path):
    return pith.load_model(toy_path)


@pytest.fixture(scope="session")
def hybrid_model():
    return pith.load_model(os.path.join(MODELS_DIR, "toy-hybrid"))


def program(name):
    """The path of a built example program from the environment (PITH_READ, ...), or skip."""
    path = os.environ.get(name)
    if not path or not os.path.exists(path):
        pytest.skip(f"{name} is not set to a built program (the ctest entry sets it)")
    return path
