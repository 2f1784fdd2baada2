#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Sweeps eviction policies on a toy model and plots the score against the budget.

    PYTHONPATH=build/release/python python3 examples/python/sweep.py [--model DIR] [--out sweep.png]
                                                                      [--csv sweep.csv] [--seeds N]

Reads kv-task documents of 1,000 tokens (eight "the code of NAME is ..." facts, one asked) with each
policy and budget, as pith-evict-bench does, plus one policy written here in numpy: the instruction's
attention with its neighbours (pooled) and the first slots kept as sinks. About 15 s on one core.
"""
import argparse
import os
import sys
import time

import numpy as np

import pith

HERE = os.path.dirname(os.path.abspath(__file__))


def sinks_and_instruction(scores, positions, budget, layer, sinks=4):
    """The first `sinks` slots, then the highest instruction scores averaged over 7 neighbours."""
    pooled = np.convolve(scores, np.ones(7, dtype=np.float32) / 7, mode="same")
    pooled[:sinks] = np.inf  # always kept
    return np.sort(np.argsort(-pooled, kind="stable")[:budget])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join(HERE, "..", "models", "toy-standard"))
    parser.add_argument("--out", default="sweep.png", help="the plot (PNG)")
    parser.add_argument("--csv", help="also write pith-evict-bench's CSV")
    parser.add_argument("--seeds", type=int, default=10, help="documents per cell")
    parser.add_argument("--length", type=int, default=1000)
    args = parser.parse_args()

    model = pith.load_model(args.model)
    budgets = [8, 16, 32, 64, 128]
    policies = ["streaming", "h2o", "tova", "snapkv", "citrus-shared", "citrus-shared+pool7",
                ("numpy sinks+instruction", sinks_and_instruction, "instruction")]
    start = time.perf_counter()

    def progress(done, total):
        if done % 10 == 0 or done == total:
            print(f"\r{done}/{total} runs, {time.perf_counter() - start:.1f} s", end="", file=sys.stderr)

    rows = pith.bench.sweep(model, policies=policies, budgets=budgets, lengths=[args.length], tasks=["kv"],
                            seeds=args.seeds, csv=args.csv, progress=progress)
    print(file=sys.stderr)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(r["policy"] for r in rows):
        cells = sorted((r["budget"], r["score"]) for r in rows if r["policy"] == label)
        ax.plot([b for b, _ in cells], [s for _, s in cells], marker="o", label=label,
                linestyle="--" if label.startswith("numpy") else "-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("budget k (states kept per layer besides the newest chunk)")
    ax.set_ylabel("fraction answered exactly")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{os.path.basename(os.path.normpath(args.model))}: kv task, {args.length} tokens, "
                 f"{args.seeds} documents per point")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out} ({len(rows)} cells in {time.perf_counter() - start:.1f} s)")
    for r in rows:
        print(f"{r['policy']:<26} k={r['budget']:<4} score {r['score']:.2f}")


if __name__ == "__main__":
    main()
