# SPDX-License-Identifier: MIT
# pith.Reader against pith-read on the shipped toy model, and Python policies against built-in ones.
import json
import os
import subprocess

import numpy as np
import pytest

import pith
from conftest import MODELS_DIR, program, toy_model


def read_with_pith_read(tmp_path, toy_path, text, instruction, policy, budget, chunk, steps, pool):
    document = tmp_path / "document.txt"
    document.write_text(text)
    logits = tmp_path / "logits.json"
    out = subprocess.run([program("PITH_READ"), toy_path, "--document", str(document), "--instruction", instruction,
                          "--policy", policy, "--budget", str(budget), "--chunk", str(chunk), "--steps", str(steps),
                          "--citrus-pool", str(pool), "--threads", "1", "--logits-out", str(logits)],
                         capture_output=True, text=True, timeout=60, check=True)
    answer_line = [line for line in out.stdout.splitlines() if line.startswith("answer:")][0]
    return answer_line, json.loads(logits.read_text())


@pytest.mark.parametrize("name,policy,budget,pool", [
    ("toy-standard", "citrus-shared", 64, 7), ("toy-standard", "snapkv", 32, 1), ("toy-standard", "h2o", 48, 1),
    ("toy-standard", "streaming", 64, 1), ("toy-standard", "citrus-separate", 32, 1),
    ("toy-block", "citrus-shared", 32, 7), ("toy-hybrid", "citrus-shared", 32, 7), ("toy-hybrid", "tova", 32, 1),
    ("toy-block", "finch", 32, 1), ("toy-block", "adakv(snapkv)", 32, 1), ("toy-block", "adakv(citrus-shared)", 32, 7)])
def test_same_answer_and_logits_as_pith_read(tmp_path, name, policy, budget, pool):
    model, toy_path = toy_model(name), os.path.join(MODELS_DIR, name)
    doc = pith.toy_document("kv", 700, 11)
    tok = model.tokenizer
    text, instruction = tok.decode(doc.ids[1:]), tok.decode(doc.instruction)
    steps, chunk = 8, 64
    line, logits = read_with_pith_read(tmp_path, toy_path, text, instruction, policy, budget, chunk, steps, pool)
    r = pith.Reader(model, policy=policy, budget=budget, chunk=chunk, citrus_pool=pool, instruction=instruction,
                    max_answer_tokens=steps, threads=1)
    r.feed(text)
    answer = r.answer(steps)
    assert line == "answer:" + ("" if answer.startswith(" ") or not answer else " ") + answer
    assert r.answer_ids == logits["ids"]
    # Same kernels, same order of operations: the logits are the same floats (%.9g round-trips float32).
    assert np.array_equal(r.answer_logits, np.array(logits["logits"][0], dtype=np.float32))


def test_adakv_heads_hold_unequal_counts_that_sum_to_the_layer_budget(model):
    doc = pith.toy_document("kv", 700, 3)
    budget, chunk = 32, 64
    r = pith.Reader(model, policy="citrus-shared", head_adaptive=True, adakv_alpha=0.2, budget=budget, chunk=chunk,
                    instruction=doc.instruction, max_answer_tokens=8, threads=1)
    r.feed(doc.ids)
    r.answer(5)  # after citrus-shared's final cut each layer holds kv_heads x budget document states
    heads = model.config.num_kv_heads
    counts = [[len(r.kept_positions(layer, h)) for h in range(heads)] for layer in range(model.config.num_layers)]
    assert all(sum(layer) == heads * budget for layer in counts)
    assert any(len(set(layer)) > 1 for layer in counts)  # some layer's heads differ
    with pytest.raises(pith.ArgumentError, match="adakv"):
        pith.Reader(model, policy="streaming", head_adaptive=True, instruction=doc.instruction)
    with pytest.raises(pith.ArgumentError, match="adakv_alpha"):
        pith.Reader(model, policy="adakv(snapkv)", adakv_alpha=1.5, instruction=doc.instruction).feed(doc.ids[:10])


def test_text_and_ids_read_alike(model):
    doc = pith.toy_document("passkey", 500, 4)
    a = pith.Reader(model, policy="snapkv", budget=32, chunk=64, instruction=doc.instruction, max_answer_tokens=8)
    a.feed(model.tokenizer.decode(doc.ids[1:]))
    b = pith.Reader(model, policy="snapkv", budget=32, chunk=64, instruction=doc.instruction, max_answer_tokens=8)
    for piece in np.array_split(doc.ids, 7):  # any split of ids reads as one feed
        b.feed(piece)
    assert a.answer(8) == b.answer(8) and a.answer_ids == b.answer_ids


def test_kept_positions_stats_and_memory(model):
    doc = pith.toy_document("kv", 1000, 2)
    budget, chunk = 64, 64
    r = pith.Reader(model, policy="snapkv", budget=budget, chunk=chunk, instruction=doc.instruction, max_answer_tokens=8)
    seen = []
    r.feed(doc.ids, progress=seen.append)
    assert seen == list(range(chunk, 1000 - 1000 % chunk + 1, chunk))
    r.answer(5)
    for layer in range(4):
        for head in range(2):
            kept = r.kept_positions(layer, head)
            assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0)
            assert len(kept) <= budget + chunk and kept[-1] == 999
    assert r.stats.tokens_read == 1000 and r.stats.chunks == 16
    report = r.memory_report()
    assert len(report) == 4 and all(entry["kv_cache_bytes"] > 0 and entry["kv_type"] == "f32" for entry in report)
    half = pith.Reader(model, policy="snapkv", budget=budget, chunk=chunk, instruction=doc.instruction, kv_type="f16",
                       max_answer_tokens=8)
    half.feed(doc.ids[:200])
    assert half.memory_report()[0]["kv_type"] == "f16"
    assert half.memory_report()[0]["kv_cache_bytes"] < report[0]["kv_cache_bytes"]


def top_k(scores, k):
    """pith::top_k: the k highest, ties to the lower index (a stable sort of the negated scores)."""
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def read_all(model, doc, **options):
    r = pith.Reader(model, chunk=64, instruction=doc.instruction, max_answer_tokens=8, threads=1, **options)
    r.feed(doc.ids)
    r.answer(5)
    kept = [[r.kept_positions(layer, head) for head in range(2)] for layer in range(4)]
    return r, kept


@pytest.mark.parametrize("pool", [1, 7])
def test_numpy_citrus_equals_the_builtin(model, pool):
    doc = pith.toy_document("kv", 900, 6)
    calls = []

    def citrus(scores, positions, budget, layer):
        assert scores.dtype == np.float32 and positions.dtype == np.int64 and len(scores) == len(positions)
        assert not scores.flags.writeable
        calls.append(layer)
        return top_k(scores, budget)

    built_in, kept_a = read_all(model, doc, policy="citrus-shared", budget=48, citrus_pool=pool)
    python, kept_b = read_all(model, doc, policy=citrus, policy_scores="instruction", budget=48, citrus_pool=pool)
    assert calls and set(calls) == {0, 1, 2, 3}
    assert python.answer_ids == built_in.answer_ids
    assert np.array_equal(python.answer_logits, built_in.answer_logits)
    for a, b in zip(kept_a, kept_b):
        for x, y in zip(a, b):
            assert np.array_equal(x, y)


def test_numpy_streaming_equals_the_builtin(model):
    doc = pith.toy_document("passkey", 800, 9)

    def streaming(scores, positions, budget, layer, sink=4):
        n = len(scores)
        return np.concatenate([np.arange(sink), np.arange(n - (budget - sink), n)])

    built_in, kept_a = read_all(model, doc, policy="streaming", budget=40)
    python, kept_b = read_all(model, doc, policy=streaming, budget=40)
    assert python.answer_ids == built_in.answer_ids
    assert all(np.array_equal(x, y) for a, b in zip(kept_a, kept_b) for x, y in zip(a, b))


def test_per_head_policy_sees_each_kv_head(model):
    doc = pith.toy_document("kv", 400, 1)
    heads = set()

    def newest(scores, positions, budget, layer, head):
        heads.add((layer, head))
        return np.arange(len(scores) - budget, len(scores))

    r = pith.Reader(model, policy=newest, policy_per_head=True, budget=32, chunk=64, instruction=doc.instruction,
                    max_answer_tokens=8)
    r.feed(doc.ids)
    r.answer(3)
    assert heads == {(layer, head) for layer in range(4) for head in range(2)}


@pytest.fixture(scope="module")
def chat_toy(chat_toy_path):
    return chat_toy_path


@pytest.mark.parametrize("system", [None, "Answer briefly."])
def test_chat_template_frames_as_pith_read(tmp_path, chat_toy, system):
    model = pith.load_model(chat_toy)
    assert model.chat_template_name is not None
    assert model.chat_template([("user", "hi")]).endswith("[/INST]")
    doc = pith.toy_document("kv", 600, 7)
    text, instruction = model.tokenizer.decode(doc.ids[1:]), model.tokenizer.decode(doc.instruction)
    document = tmp_path / "document.txt"
    document.write_text(text)
    logits = tmp_path / "logits.json"
    command = [program("PITH_READ"), chat_toy, "--document", str(document), "--instruction", instruction,
               "--policy", "citrus-shared", "--citrus-pool", "7", "--budget", "32", "--chunk", "64", "--steps", "6",
               "--threads", "1", "--logits-out", str(logits)] + (["--system", system] if system else [])
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "chat: Mistral" in out.stderr
    r = pith.Reader(model, policy="citrus-shared", citrus_pool=7, budget=32, chunk=64, instruction=instruction,
                    system=system, max_answer_tokens=6)
    assert r.chat and r.instruction_ids != model.tokenizer.encode(instruction)
    for piece in (text[:1000], text[1000:1001], text[1001:]):  # pieces cut anywhere read as the whole text
        r.feed(piece)
    answer = r.answer(6)
    line = [x for x in out.stdout.splitlines() if x.startswith("answer:")][0]
    assert line == "answer:" + ("" if answer.startswith(" ") or not answer else " ") + answer
    expected = json.loads(logits.read_text())
    assert r.answer_ids == expected["ids"]
    assert np.array_equal(r.answer_logits, np.array(expected["logits"][0], dtype=np.float32))
    raw = pith.Reader(model, policy="citrus-shared", budget=32, chunk=64, instruction=instruction, chat=False)
    assert not raw.chat and raw.instruction_ids == model.tokenizer.encode(instruction)


def test_chat_needs_a_template_and_text(model, chat_toy):
    with pytest.raises(pith.ConfigError, match="no chat template"):
        pith.Reader(model, instruction="what is the pass key ?", chat=True)
    with pytest.raises(pith.ArgumentError, match="system needs the chat template"):
        pith.Reader(model, instruction="what is the pass key ?", system="Be brief.")
    chat_model = pith.load_model(chat_toy)
    with pytest.raises(pith.ArgumentError, match="not text"):
        pith.Reader(chat_model, instruction=[20, 19], chat=True)
    r = pith.Reader(chat_model, instruction="what is the pass key ?")
    with pytest.raises(pith.ArgumentError, match="reads text"):
        r.feed([1, 16, 17])


def test_text_split_anywhere_reads_as_one_text(model):
    doc = pith.toy_document("kv", 900, 12)
    text = model.tokenizer.decode(doc.ids[1:])
    answers = []
    for cuts in ([], [5, 6, 333, 334, 2000], list(range(0, len(text), 97))):
        r = pith.Reader(model, policy="snapkv", budget=32, chunk=64, instruction=doc.instruction, max_answer_tokens=6)
        for a, b in zip([0] + cuts, cuts + [len(text)]):
            r.feed(text[a:b])
        r.answer(6)
        answers.append((r.answer_ids, r.stats.tokens_read, r.kept_positions(1, 1).tolist()))
    assert answers[0] == answers[1] == answers[2] and answers[0][1] == 900
    mixed = pith.Reader(model, policy="snapkv", budget=32, chunk=64, instruction=doc.instruction)
    mixed.feed(text[:100])
    with pytest.raises(pith.ArgumentError, match="fed text"):
        mixed.feed(doc.ids[50:])
