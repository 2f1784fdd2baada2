# SPDX-License-Identifier: MIT
# Fixtures of the pytest suite of the Python module (ctest pith_python_pytest sets PYTHONPATH to the
# built package, PITH_MODELS_DIR to examples/models and PITH_READ to the built pith-read).
import os

import pytest

import pith

# The toy models are too small to split over threads: one thread, as pith-evict-bench runs them
# (a pool's waits on a loaded machine would cost more than they save).
pith.set_num_threads(1)

MODELS_DIR = os.environ.get("PITH_MODELS_DIR",
                            os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models"))


@pytest.fixture(scope="session")
def toy_path():
    return os.path.join(MODELS_DIR, "toy-standard")


@pytest.fixture(scope="session")
def model(toy_path):
    return pith.load_model(toy_path)


_models = {}


def toy_model(name):
    """A shipped toy model (examples/models/NAME), loaded once."""
    if name not in _models:
        _models[name] = pith.load_model(os.path.join(MODELS_DIR, name))
    return _models[name]


def program(name):
    """The path of a built example program from the environment (PITH_READ, ...), or skip."""
    path = os.environ.get(name)
    if not path or not os.path.exists(path):
        pytest.skip(f"{name} is not set to a built program (the ctest entry sets it)")
    return path
