#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the benchmark model of bench/bench_common.hpp (a random Llama: hidden 512, 8 layers, 8
heads, 2 KV heads, intermediate 1376, vocab 32000, tied head) as a GGUF file whose matrices are
stored as F32, F16 or BF16 (norm gains stay F32, as llama.cpp's converters store them).

The file runs with pith-generate and with llama.cpp alike (--prompt-ids, no vocabulary), which is
how the decode speed and the peak memory of an F16 checkpoint are compared side by side:

    /usr/bin/python3 tools/make_bench_gguf.py /tmp/bench-f16.gguf --type F16
    pith-generate /tmp/bench-f16.gguf --prompt-ids 1,2,3 --steps 64 --ignore-eos
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_io import write_gguf  # noqa: E402

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE, VOCAB = 512, 8, 8, 2, 1376, 32000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--type", choices=["F32", "F16", "BF16"], default="F16")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    head_dim = HIDDEN // HEADS

    def matrix(rows: int, cols: int) -> np.ndarray:
        bound = np.sqrt(3.0 / cols)  # unit variance through the matrix, as pith::random_weights
        return rng.uniform(-bound, bound, size=(rows, cols)).astype(np.float32)

    tensors: dict[str, np.ndarray] = {"token_embd.weight": matrix(VOCAB, HIDDEN)}
    storage = {"token_embd.weight": args.type}
    for i in range(LAYERS):
        layer = {
            f"blk.{i}.attn_norm.weight": np.ones(HIDDEN, np.float32),
            f"blk.{i}.attn_q.weight": matrix(HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_k.weight": matrix(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_v.weight": matrix(KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_output.weight": matrix(HIDDEN, HEADS * head_dim),
            f"blk.{i}.ffn_norm.weight": np.ones(HIDDEN, np.float32),
            f"blk.{i}.ffn_gate.weight": matrix(INTERMEDIATE, HIDDEN),
            f"blk.{i}.ffn_up.weight": matrix(INTERMEDIATE, HIDDEN),
            f"blk.{i}.ffn_down.weight": matrix(HIDDEN, INTERMEDIATE),
        }
        tensors.update(layer)
        storage.update({name: args.type for name, value in layer.items() if value.ndim == 2})
    tensors["output_norm.weight"] = np.ones(HIDDEN, np.float32)
    metadata = [
        ("general.architecture", "string", "llama"),
        ("general.name", "string", f"pith benchmark model ({args.type})"),
        ("general.file_type", "uint32", {"F32": 0, "F16": 1, "BF16": 32}[args.type]),
        ("llama.context_length", "uint32", 4096),
        ("llama.embedding_length", "uint32", HIDDEN),
        ("llama.block_count", "uint32", LAYERS),
        ("llama.feed_forward_length", "uint32", INTERMEDIATE),
        ("llama.rope.dimension_count", "uint32", head_dim),
        ("llama.attention.head_count", "uint32", HEADS),
        ("llama.attention.head_count_kv", "uint32", KV_HEADS),
        ("llama.attention.layer_norm_rms_epsilon", "float32", 1e-5),
        ("llama.rope.freq_base", "float32", 10000.0),
        ("llama.vocab_size", "uint32", VOCAB),
    ]
    write_gguf(args.output, metadata, tensors, storage)
    print(f"{args.output}: {args.output.stat().st_size / 2**20:.1f} MiB ({args.type} matrices)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
