# SPDX-License-Identifier: MIT
# pith.bench.sweep against pith-evict-bench: the same cells, counts and scores, the same CSV columns.
import subprocess

import numpy as np

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
    import pytest
    with pytest.raises(pith.ArgumentError, match="a budget of 0"):
        pith.bench.sweep(model, budgets=[0])
    with pytest.raises(pith.ArgumentError, match="unknown task"):
        pith.bench.sweep(model, tasks=["sudoku"])
    with pytest.raises(pith.ArgumentError, match="unknown eviction policy"):
        pith.bench.sweep(model, policies=["nope"])
    with pytest.raises(TypeError):
        pith.bench.sweep(model, policies=[42])
