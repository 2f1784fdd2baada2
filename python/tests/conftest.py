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


CHAT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "chat")


@pytest.fixture(scope="session")
def chat_toy_path(tmp_path_factory):
    """toy-block with Mistral v0.3's tokenizer_config.json beside it (as tests/programs' chat-toy)."""
    folder = tmp_path_factory.mktemp("chat-toy")
    for name in ("config.json", "model.safetensors", "vocab.json"):
        os.symlink(os.path.join(MODELS_DIR, "toy-block", name), folder / name)
    os.symlink(os.path.join(CHAT_DATA, "mistral-v0.3.tokenizer_config.json"), folder / "tokenizer_config.json")
    return str(folder)


def program(name):
    """The path of a built example program from the environment (PITH_READ, ...), or skip."""
    path = os.environ.get(name)
    if not path or not os.path.exists(path):
        pytest.skip(f"{name} is not set to a built program (the ctest entry sets it)")
    return path
