# SPDX-License-Identifier: MIT
# The model, its configuration and tokenizer, Session.forward / generate, the task generators.
import dataclasses

import numpy as np
import pytest

import pith


def test_config_is_a_frozen_dataclass(model):
    c = model.config
    assert dataclasses.is_dataclass(c)
    assert (c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (4, 64, 4, 2, 16, 157)
    assert c.mixers == ["standard"] * 4 and c.eos_token_id == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_layers = 3


def test_tokenizer_round_trip(model):
    tok = model.tokenizer
    assert tok.vocab_size == 157 and tok.bos_id == 1 and tok.eos_id == 2
    ids = tok.encode("what is the code of zoe ?")
    assert ids == [20, 19, 16, 17, 18, 54, 5]
    assert tok.encode("the code", add_special=True)[0] == tok.bos_id
    assert tok.encode(tok.decode(ids)) == ids
    assert tok.decode(np.array(ids, dtype=np.int64)) == tok.decode(ids)
    assert tok.token_text(17) == "code" and tok.token_id("code") == 17 and tok.token_id("no-such-word") is None


def test_toy_models_have_no_chat_template(model):
    assert model.chat_template_name is None
    with pytest.raises(pith.ConfigError, match="no chat template"):
        model.chat_template([("user", "hello")])


def test_forward_all_positions_match_last(model):
    ids = pith.toy_document("passkey", 40, 1).ids
    s = pith.Session(model, max_context=64, threads=1)
    all_rows = s.forward(ids, all_logits=True)
    assert all_rows.shape == (40, 157) and all_rows.dtype == np.float32
    assert s.position == 40
    s.reset()
    last = s.forward(ids)
    # Every row goes through the output GEMM, the last alone through a matrix-vector product: the sums
    # run in another order, a few float32 ulps apart on logits of magnitude ~10.
    rounding = 1e-4
    assert np.allclose(all_rows[-1], last, rtol=0, atol=rounding)
    # Token by token through the cache: the same argmax as the whole prompt's rows.
    s.reset()
    s.forward(ids[:39])
    assert int(np.argmax(s.forward(ids[39:]))) == int(np.argmax(last))


def test_generate_is_greedy_forward(model):
    prompt = pith.toy_document("passkey", 60, 2).ids
    steps = list(pith.Session(model, threads=1).generate(prompt, 6))
    s = pith.Session(model, threads=1)
    logits = s.forward(prompt)
    expected = []
    for _ in range(6):
        token = int(np.argmax(logits))
        if token == model.config.eos_token_id:
            break
        expected.append(token)
        logits = s.forward([token])
    assert steps == expected and len(steps) >= 1
    seeded = [list(pith.Session(model).generate(prompt, 8, pith.Sampler(temperature=1.0, seed=7))) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_toy_document_matches_the_generator_contract():
    d = pith.toy_document("kv", 500, 3)
    assert len(d.ids) == 500 and d.ids[0] == 1 and d.ids.dtype == np.int32
    assert len(d.fact_offsets) == 8 and d.answer[-1] == 3  # the answer ends with "."
    assert len(pith.toy_vocabulary()) == 157


def test_ruler_document_in_words():
    d = pith.ruler_document("niah_single_1", 400, 1)
    assert d.tokens <= 400 and d.gold and d.gold[0] in d.document
    assert pith.ruler_score("the value is " + d.gold[0], d.gold) == 1.0
    assert pith.ruler_score("nothing", d.gold) == 0.0
    assert "niah_single_1" in pith.ruler_tasks()


def test_help_shows_docstrings():
    assert "budget" in pith.Reader.__init__.__doc__ and "policy" in pith.Reader.__init__.__doc__
    assert "GIL" in pith.Reader.feed.__doc__ and "copy" in pith.Reader.kept_positions.__doc__
    assert "no further copy" in pith.Session.forward.__doc__
    assert pith.load_model.__doc__ and pith.bench.sweep.__doc__


def test_chat_template_takes_pairs_and_dicts(chat_toy_path):
    model = pith.load_model(chat_toy_path)
    pairs = model.chat_template([("user", "hi"), ("assistant", "hello"), ("user", "bye")])
    dicts = model.chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                 {"role": "user", "content": "bye"}])
    assert pairs == dicts and "hi" in pairs and "bye" in pairs
    with pytest.raises(TypeError):
        model.chat_template([{"role": "user"}])
    with pytest.raises(pith.ArgumentError, match="role"):
        model.chat_template([("robot", "hi")])
