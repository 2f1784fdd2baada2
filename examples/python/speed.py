#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What reading through Python costs against pith-read, and a Python policy's cost per chunk.

    PYTHONPATH=build/release/python python3 examples/python/speed.py \\
        --pith-read build/release/examples/pith-read [--rounds 5] [--policy-tokens 20000]

1. The demo's read (README "Quick start"): the 100,000-token kv document of seed 2026 on toy-block,
   citrus-shared pooled over 7 states, budget 64, chunk 64, 8 answer steps, one thread; read by the
   pith-read program and by pith.Reader (load_model, the text fed whole, answer), alternating, `--rounds`
   times each in this one run. Printed: the ratio Python / pith-read of the CPU seconds (the process's
   own for pith.Reader, the child's for pith-read: a busy machine stretches the wall time but much less
   the CPU time) and of the wall seconds, each on the median and on the best round.
2. A policy written in numpy against the built-in one it equals (streaming: 4 sinks and the newest
   states), on a shorter document of the same kind: the extra CPU milliseconds per chunk (one call per
   layer per chunk), the kept positions checked equal.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import pith

HERE = os.path.dirname(os.path.abspath(__file__))
# The demo (examples/CMakeLists.txt, PITH_DEMO_*).
DEMO_MODEL = os.path.join(HERE, "..", "models", "toy-block")
DEMO_SEED, DEMO_LENGTH = 2026, 100_000
POLICY, POOL, BUDGET, CHUNK, STEPS = "citrus-shared", 7, 64, 64, 8


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pith_read(pith_read, document, question):
    """pith-read on the document: (CPU seconds, wall seconds, answer line)."""
    cpu, wall = children_cpu(), time.perf_counter()
    out = subprocess.run([pith_read, DEMO_MODEL, "--document", document, "--instruction", question, "--policy", POLICY,
                          "--citrus-pool", str(POOL), "--budget", str(BUDGET), "--chunk", str(CHUNK),
                          "--steps", str(STEPS), "--threads", "1"],
                         capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    line = [l for l in out.stdout.splitlines() if l.startswith("answer:")][0]
    return cpu, wall, line


def run_python(document, question):
    """pith.Reader on the same file, as pith-read reads it: (CPU seconds, wall seconds, answer line)."""
    cpu, wall = time.process_time(), time.perf_counter()
    model = pith.load_model(DEMO_MODEL)
    reader = pith.Reader(model, policy=POLICY, citrus_pool=POOL, budget=BUDGET, chunk=CHUNK, threads=1,
                         instruction=question, max_answer_tokens=STEPS)
    with open(document) as f:
        reader.feed(f.read())
    answer = reader.answer(STEPS)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return cpu, wall, "answer:" + ("" if answer.startswith(" ") or not answer else " ") + answer


def ratios(name, python, native):
    med = statistics.median(python) / statistics.median(native)
    best = min(python) / min(native)
    print(f"  {name:4s} Python / pith-read: median {med:.3f} ({statistics.median(python):.3f} s / "
          f"{statistics.median(native):.3f} s), best {best:.3f} ({min(python):.3f} s / {min(native):.3f} s)")
    return med


def policy_overhead(tokens):
    """CPU ms per chunk a numpy streaming policy adds over the built-in streaming."""
    model = pith.load_model(DEMO_MODEL)
    doc = pith.toy_document("kv", tokens, DEMO_SEED)
    sink = 4

    def streaming(scores, positions, budget, layer):
        n = len(scores)
        return np.concatenate([np.arange(sink), np.arange(n - (budget - sink), n)])

    def read(policy):
        reader = pith.Reader(model, policy=policy, budget=BUDGET, chunk=CHUNK, sink=sink, threads=1,
                             instruction=doc.instruction, max_answer_tokens=STEPS)
        cpu = time.process_time()
        reader.feed(doc.ids)
        cpu = time.process_time() - cpu
        kept = [reader.kept_positions(layer, 0) for layer in range(model.config.num_layers)]
        return cpu, reader.stats.chunks, kept

    built_in, python = [], []
    for _ in range(3):
        cpu, chunks, kept_a = read("streaming")
        built_in.append(cpu)
        cpu, _, kept_b = read(streaming)
        python.append(cpu)
        assert all(np.array_equal(a, b) for a, b in zip(kept_a, kept_b)), "the numpy policy kept other states"
    extra = (min(python) - min(built_in)) / chunks * 1e3
    layers = model.config.num_layers
    print(f"numpy streaming policy on {tokens} tokens ({chunks} chunks, {layers} calls per chunk): built-in "
          f"{min(built_in):.3f} s, numpy {min(python):.3f} s CPU (best of 3): {extra:.3f} ms per chunk "
          f"({extra / layers * 1e3:.0f} us per call)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pith-read", default=os.environ.get("PITH_READ", "build/release/examples/pith-read"))
    parser.add_argument("--rounds", type=int, default=5, help="reads of each, alternating")
    parser.add_argument("--policy-tokens", type=int, default=20_000, help="the policy comparison's document length")
    args = parser.parse_args()
    if not os.path.exists(args.pith_read):
        sys.exit(f"speed.py: no pith-read at {args.pith_read} (--pith-read PATH)")

    model = pith.load_model(DEMO_MODEL)
    doc = pith.toy_document("kv", DEMO_LENGTH, DEMO_SEED)
    tok = model.tokenizer
    question = tok.decode(doc.instruction).strip()
    expected = tok.decode(doc.answer).strip()
    del model
    with tempfile.TemporaryDirectory() as folder:
        document = os.path.join(folder, "demo-kv-100k.txt")
        with open(document, "w") as f:
            f.write(tok.decode(doc.ids[1:]))  # as pith-evict-bench --make-document: the text after BOS
        native, python = {"cpu": [], "wall": []}, {"cpu": [], "wall": []}
        for round_ in range(args.rounds):
            # Alternating which goes first, so that neither always meets the machine's state after the other.
            runs = [("pith-read", native, lambda: run_pith_read(args.pith_read, document, question)),
                    ("python", python, lambda: run_python(document, question))]
            lines = []
            for name, into, run in (runs if round_ % 2 == 0 else runs[::-1]):
                cpu, wall, line = run()
                into["cpu"].append(cpu)
                into["wall"].append(wall)
                lines.append(line)
                print(f"round {round_ + 1} {name:9s} CPU {cpu:.3f} s, wall {wall:.3f} s, {line}", flush=True)
            if lines[0] != lines[1]:
                sys.exit(f"speed.py: the answers differ: {lines[0]!r} / {lines[1]!r}")
    print(f"{DEMO_LENGTH} tokens of kv seed {DEMO_SEED} on toy-block, {POLICY} pool {POOL}, budget {BUDGET}, chunk "
          f"{CHUNK}, {args.rounds} rounds (expected answer: {expected}):")
    ratios("CPU", python["cpu"], native["cpu"])
    ratios("wall", python["wall"], native["wall"])
    policy_overhead(args.policy_tokens)


if __name__ == "__main__":
    main()
