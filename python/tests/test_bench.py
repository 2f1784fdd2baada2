# SPDX-License-Identifier: MIT
# pith.bench.sweep against pith-evict-bench: the same cells, counts and scores, the same CSV columns.
import os
import subprocess

import numpy as np
import pytest

import pith
from conftest import program

SWEEP = dict(policies=["streaming", "citrus-shared+pool7", "full"], budgets=[16, 64], lengths=[600], tasks=["kv"],
             seeds=3, chunk=64)
# Columns that measure time or memory differ from run to run; the rest must agree exactly.
MEASURED = {"tokens_per_s", "peak_memory_mib", "state_mib", "seconds_per_document"}


def test_sweep_writes_pith_evict_bench_csv(tmp_path, model, toy_path):
    ours = tmp_path / "python.csv"
    rows = pith.bench.sweep(model, csv=str(ours), **SWEEP)
    assert [r["policy"] for r in rows] == ["citrus-shared+pool7", "citrus-shared+pool7", "full", "streaming",
                                           "streaming"]
    assert all(set(r) == set(pith.bench.CSV_COLUMNS) for r in rows)
    assert rows[1]["score"] == 1.0 and rows[1]["documents"] == 3  # CItruS pooled keeps the facts at 64
    theirs = tmp_path / "bench.csv"
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", toy_path, "--policies", ",".join(SWEEP["policies"]),
                    "--budgets", "16,64", "--lengths", "600", "--tasks", "kv", "--seeds", "3", "--chunk", "64",
                    "--csv", str(theirs)], capture_output=True, text=True, timeout=60, check=True)
    a, b = pith.bench.read_csv(str(ours)), pith.bench.read_csv(str(theirs))
    assert theirs.read_text().splitlines()[0] == ours.read_text().splitlines()[0]
    assert len(a) == len(b) == len(rows)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in MEASURED} == {k: v for k, v in y.items() if k not in MEASURED}


def test_sweep_with_a_python_policy(model):
    def newest(scores, positions, budget, layer):
        return np.arange(len(scores) - budget, len(scores))

    rows = pith.bench.sweep(model, policies=[("newest", newest), "streaming"], budgets=[32], lengths=[300],
                            tasks=["passkey"], seeds=2)
    assert [r["policy"] for r in rows] == ["newest", "streaming"] and all(r["documents"] == 2 for r in rows)


def test_sweep_rejects_bad_input(model):
    with pytest.raises(pith.ArgumentError, match="a budget of 0"):
        pith.bench.sweep(model, budgets=[0])
    with pytest.raises(pith.ArgumentError, match="unknown task"):
        pith.bench.sweep(model, tasks=["sudoku"])
    with pytest.raises(pith.ArgumentError, match="unknown eviction policy"):
        pith.bench.sweep(model, policies=["nope"])
    with pytest.raises(TypeError):
        pith.bench.sweep(model, policies=[42])
    with pytest.raises(pith.ArgumentError, match="depths must be in 0..1"):
        pith.bench.sweep(model, tasks=["niah_single_1"], depths=[1.5])


STORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "models", "stories260K",
                       "stories260K.bin")


def test_ruler_sweep_matches_pith_evict_bench(tmp_path):
    path = os.environ.get("PITH_STORIES260K", STORIES)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (the real tiny checkpoints of ../shared/models)")
    model = pith.load_model(path)
    ours = tmp_path / "python.csv"
    rows = pith.bench.sweep(model, policies=["streaming", "citrus-shared"], budgets=[64], lengths=[800],
                            tasks=["niah_single_1", "vt"], depths=[0, 1], vt_chains=2, answer_tokens=8, seeds=1,
                            csv=str(ours))
    assert [(r["task"], r["depth"]) for r in rows[:2]] == [("niah_single_1", 0.0), ("niah_single_1", 0.0)]
    assert {r["task_family"] for r in rows} == {"ruler"} and len(rows) == 6
    theirs = tmp_path / "bench.csv"
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", path, "--tasks", "niah_single_1,vt", "--lengths", "800",
                    "--seeds", "1", "--policies", "streaming,citrus-shared", "--budgets", "64", "--depths", "0,1",
                    "--answer-tokens", "8", "--vt-chains", "2", "--csv", str(theirs)],
                   capture_output=True, text=True, timeout=60, check=True)
    a, b = pith.bench.read_csv(str(ours)), pith.bench.read_csv(str(theirs))
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in MEASURED} == {k: v for k, v in y.items() if k not in MEASURED}


def test_protocols_and_ratios_match_pith_evict_bench(tmp_path, model, toy_path):
    ours = tmp_path / "python.csv"
    rows = pith.bench.sweep(model, policies=["snapkv", "citrus-shared"], budgets=[64], ratios=[0.75], lengths=[500],
                            tasks=["kv"], seeds=2, protocols=["chunked", "oneshot"], question_in_cut=True,
                            csv=str(ours))
    assert len(rows) == 8 and {r["question"] for r in rows} == {"same", "same+seen"}
    assert {r["budget"] for r in rows if r["ratio"] == 0.75} == {pith.ratio_budget(500, 0.75)} == {125}
    theirs = tmp_path / "bench.csv"
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", toy_path, "--policies", "snapkv,citrus-shared",
                    "--budgets", "64", "--ratios", "0.75", "--lengths", "500", "--tasks", "kv", "--seeds", "2",
                    "--protocol", "chunked,oneshot", "--question-in-cut", "--csv", str(theirs)],
                   capture_output=True, text=True, timeout=60, check=True)
    a, b = pith.bench.read_csv(str(ours)), pith.bench.read_csv(str(theirs))
    assert len(a) == len(b) == 8
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in MEASURED} == {k: v for k, v in y.items() if k not in MEASURED}


def test_log_likelihood_matches_pith_evict_bench_perplexity(tmp_path, model, toy_path):
    tok = model.tokenizer
    text = tok.decode(pith.toy_document("kv", 700, 21).ids[1:])
    (tmp_path / "text.txt").write_text(text)
    ids = tok.encode(text, True, False)
    theirs = tmp_path / "bench.csv"
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", toy_path, "--perplexity", str(tmp_path / "text.txt"),
                    "--lengths", "400", "--ppl-tokens", "50", "--seeds", "1", "--policies", "full,streaming,snapkv",
                    "--budgets", "64", "--csv", str(theirs)], capture_output=True, text=True, timeout=60, check=True)
    scores = {row["policy"]: row["score"] for row in pith.bench.read_csv(str(theirs))}
    for policy in ("full", "streaming", "snapkv"):
        options = dict(max_context=400 + 50 + 2) if policy == "full" else {}
        r = pith.Reader(model, policy=policy, budget=64, chunk=64, max_answer_tokens=51, **options)
        r.feed(ids[:400])
        result = r.log_likelihood(ids[400:450])
        assert result.tokens == 50 and result.sum < 0
        assert "%.4f" % result.perplexity == scores[policy]
    with pytest.raises(pith.ArgumentError, match="already answered or scored"):
        r.log_likelihood(ids[400:410])


def test_sweep_json_matches_pith_evict_bench(tmp_path, model, toy_path):
    import json
    ours, theirs = tmp_path / "python.json", tmp_path / "bench.json"
    pith.bench.sweep(model, policies=["streaming", "snapkv"], budgets=[32], lengths=[500], tasks=["kv"], seeds=2,
                     chunk=64, json=str(ours))
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", toy_path, "--policies", "streaming,snapkv", "--budgets", "32",
                    "--lengths", "500", "--tasks", "kv", "--seeds", "2", "--chunk", "64", "--json", str(theirs)],
                   capture_output=True, text=True, timeout=60, check=True)
    a, b = json.loads(ours.read_text()), json.loads(theirs.read_text())
    assert len(a["rows"]) == 2
    for x, y in zip(a["rows"], b["rows"]):
        assert set(x) == set(y)
        for k in MEASURED:
            del x[k], y[k]
    assert a == b  # settings, note and rows, every key


def test_different_question_matches_pith_evict_bench(tmp_path, model, toy_path):
    ours = tmp_path / "python.csv"
    arguments = dict(policies=["citrus-shared+pool7", "streaming"], budgets=[64], lengths=[600], tasks=["kv"], seeds=3)
    rows = pith.bench.sweep(model, different_question=True, csv=str(ours), **arguments)
    same = pith.bench.sweep(model, **arguments)
    assert {r["question"] for r in rows} == {"different"}
    # Read with another fact's question, CItruS keeps that fact's states: fewer right than asked what it read for.
    assert rows[0]["policy"] == same[0]["policy"] == "citrus-shared+pool7"
    assert same[0]["correct"] == 3 and rows[0]["correct"] < 3
    theirs = tmp_path / "bench.csv"
    subprocess.run([program("PITH_EVICT_BENCH"), "--model", toy_path, "--policies", "citrus-shared+pool7,streaming",
                    "--budgets", "64", "--lengths", "600", "--tasks", "kv", "--seeds", "3", "--different-question",
                    "--csv", str(theirs)], capture_output=True, text=True, timeout=60, check=True)
    a, b = pith.bench.read_csv(str(ours)), pith.bench.read_csv(str(theirs))
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k not in MEASURED} == {k: v for k, v in y.items() if k not in MEASURED}
    with pytest.raises(pith.ArgumentError, match="different_question"):
        pith.bench.sweep(model, different_question=True, tasks=["kv", "passkey"], lengths=[500], seeds=1, budgets=[16])
    with pytest.raises(pith.ArgumentError, match="different_question"):
        pith.bench.sweep(model, different_question=True, tasks=["kv"], facts=1, lengths=[500], seeds=1, budgets=[16])
