# SPDX-License-Identifier: MIT
# Bad input gives Python exceptions (pith.Error's classes with pith's messages, TypeError for wrong
# types), never a crash; a Reader whose call failed refuses further calls.
import numpy as np
import pytest

import pith


def test_error_hierarchy():
    for cls in (pith.IoError, pith.FormatError, pith.ConfigError, pith.ShapeError, pith.ArgumentError):
        assert issubclass(cls, pith.Error)
    assert issubclass(pith.Error, RuntimeError) and issubclass(pith.IoError, OSError)
    assert issubclass(pith.ArgumentError, ValueError)


def test_missing_and_corrupt_models(tmp_path):
    with pytest.raises(pith.IoError, match="no such file or directory"):
        pith.load_model(str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(pith.Error):
        pith.load_model(str(bad))
    with pytest.raises(TypeError):
        pith.load_model(42)


def test_bad_load_options(toy_path):
    with pytest.raises(pith.ArgumentError, match="unknown type 'q9'"):
        pith.load_model(toy_path, quantize="q9")


@pytest.mark.parametrize("options,match", [
    (dict(budget=-1), "budget must be >= 0, not -1"),
    (dict(budget=0), "a budget of 0"),
    (dict(chunk=0), "chunk_size must be at least 1"),
    (dict(policy="nope"), "unknown eviction policy 'nope'"),
    (dict(positions="sideways"), "positions must be"),
    (dict(kv_type="f8"), "kv_type must be"),
    (dict(citrus_pool=2), "must be odd"),
    (dict(ratio=0.5), "ratio applies to the oneshot protocol"),
    (dict(policy="citrus-shared", instruction=None), "scores with the instruction, which is empty"),
    (dict(instruction=[1, 2, 999]), "outside the vocabulary"),
    (dict(threads=-2), "threads must be >= 0"),
])
def test_bad_reader_options(model, options, match):
    kwargs = dict(instruction="what is the pass key ?")
    kwargs.update(options)
    with pytest.raises(pith.ArgumentError, match=match):
        pith.Reader(model, **kwargs)


@pytest.mark.parametrize("options", [dict(budget="64"), dict(budget=1.5), dict(policy=3), dict(instruction=3.0),
                                     dict(instruction=["a"])])
def test_wrong_types(model, options):
    kwargs = dict(instruction="what is the pass key ?")
    kwargs.update(options)
    with pytest.raises(TypeError):
        pith.Reader(model, **kwargs)
    with pytest.raises(TypeError):
        pith.Reader("not a model", instruction="what is the pass key ?")


def test_bad_feed_and_answer(model):
    r = pith.Reader(model, budget=32, chunk=32, instruction="what is the pass key ?", max_answer_tokens=8)
    with pytest.raises(TypeError):
        r.feed(3.5)
    with pytest.raises(TypeError):
        r.feed(np.zeros(4, dtype=np.float32))
    with pytest.raises(pith.ArgumentError, match="token 157 is outside the vocabulary"):
        r.feed([1, 16, 157])
    with pytest.raises(TypeError):
        r.feed([1, 2], progress=5)
    with pytest.raises(pith.ArgumentError, match="9 steps exceed max_answer_tokens"):
        r.answer(9)
    with pytest.raises(pith.ArgumentError, match="exceed max_answer_tokens"):
        pith.Reader(model, budget=32, instruction="what is the pass key ?", max_answer_tokens=4).answer(9)
    with pytest.raises(pith.ArgumentError, match="the document is empty"):
        pith.Reader(model, budget=32, instruction="what is the pass key ?").answer(4)
    with pytest.raises(pith.ArgumentError, match="max_tokens must be >= 0"):
        r.answer(-1)
    r.feed(pith.toy_document("passkey", 100, 1).ids)
    r.answer(4)
    with pytest.raises(pith.ArgumentError, match="already answered"):
        r.feed([16])
    with pytest.raises(pith.ArgumentError, match="layer 4 is outside 0..3"):
        r.kept_positions(4, 0)
    with pytest.raises(pith.ArgumentError, match="head -1 is outside"):
        r.kept_positions(0, -1)


def test_bad_session_input(model):
    s = pith.Session(model, max_context=16)
    with pytest.raises(pith.ArgumentError):
        s.forward([])
    with pytest.raises(TypeError):
        s.forward(["the"])
    with pytest.raises(TypeError):
        s.forward("the code")
    with pytest.raises(pith.ArgumentError):
        s.forward([1, 500])
    with pytest.raises(pith.ArgumentError):
        s.forward(list(range(1, 20)))  # 19 tokens, 16 rows
    with pytest.raises(pith.ArgumentError):
        list(s.generate([1, 2], -3))
    with pytest.raises(pith.ArgumentError):
        pith.Session(model, max_chunk=0)
    with pytest.raises(pith.ArgumentError, match="temperature"):
        pith.Sampler(temperature=-1.0)
    with pytest.raises(pith.ArgumentError):
        pith.toy_document("nope", 100, 1)
    with pytest.raises(pith.ArgumentError):
        pith.toy_document("kv", 10, 1)


def policy_reader(model, policy):
    doc = pith.toy_document("kv", 400, 1)
    r = pith.Reader(model, policy=policy, budget=16, chunk=64, instruction=doc.instruction, max_answer_tokens=8)
    return r, doc


@pytest.mark.parametrize("policy,match", [
    (lambda s, p, k, l: np.arange(k + 1), r"returned 17 indices, more than the budget of 16"),
    (lambda s, p, k, l: [0, 1, 1], r"returned index 1 more than once"),
    (lambda s, p, k, l: [0, len(s)], r"returned index \d+, outside 0\.\.\d+"),
    (lambda s, p, k, l: [-1], r"returned index -1, outside"),
    (lambda s, p, k, l: np.array([0.0, 1.0]), r"dtype float64; they must be integers"),
    (lambda s, p, k, l: None, r"returned None"),
    (lambda s, p, k, l: np.zeros((2, 2), dtype=int), r"2-D array"),
])
def test_bad_policy_results(model, policy, match):
    r, doc = policy_reader(model, policy)
    with pytest.raises(pith.ArgumentError, match=match):
        r.feed(doc.ids)
    with pytest.raises(pith.ArgumentError, match="an earlier call on this Reader failed"):
        r.feed(doc.ids)


def test_policy_that_raises(model):
    def broken(scores, positions, budget, layer):
        raise ZeroDivisionError("policy bug")

    r, doc = policy_reader(model, broken)
    with pytest.raises(ZeroDivisionError, match="policy bug"):
        r.feed(doc.ids)
    with pytest.raises(pith.ArgumentError, match="make a new Reader"):
        r.answer(4)


def test_progress_that_raises(model):
    r, doc = policy_reader(model, "streaming")

    def progress(done):
        raise KeyError(done)

    with pytest.raises(KeyError):
        r.feed(doc.ids, progress=progress)


def test_policy_not_callable_and_instruction_policy_without_instruction(model):
    with pytest.raises(TypeError, match="policy must be"):
        pith.Reader(model, policy=[1, 2], instruction="what is the pass key ?")
    with pytest.raises(pith.ArgumentError, match="instruction is empty"):
        pith.Reader(model, policy=lambda s, p, k, l: [], policy_scores="instruction")
    with pytest.raises(pith.ArgumentError, match="policy_scores"):
        pith.Reader(model, policy=lambda s, p, k, l: [], policy_scores="keys", instruction="what is the pass key ?")
