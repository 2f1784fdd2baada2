#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes a benchmark model (a random Llama) as a GGUF file whose matrices are stored as F32, F16,
BF16 or a llama-quantize file type (norm gains stay F32, as llama.cpp's converters store them).

Shapes (--shape):
    bench      the model of bench/bench_common.hpp: hidden 512, 8 layers, 8 heads, 2 KV heads,
               intermediate 1376, vocab 32000, tied head (the default)
    tinyllama  a 1.1B-parameter Llama of TinyLlama's shape: hidden 2048, 22 layers, 32 heads, 4 KV
               heads, intermediate 5632, vocab 32000, untied head

Types (--type): F32, F16, BF16, or a file type of tools/gguf_io.py's llama_quantize_types, chosen per
tensor as llama-quantize does (note §5): Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K, IQ4_NL, IQ4_XS (output
head Q6_K, or Q8_0 for Q8_0), the mixtures Q4_K_M and Q5_K_M, and with --pure every matrix in the type
(also Q2_K, Q3_K, Q4_K, Q5_K). Quantization is the reference algorithm of tools/pith_quant.py
(no imatrix), one tensor at a time, so memory stays near one float32 matrix.

The file runs with pith-generate and with llama.cpp alike (--prompt-ids, no vocabulary):

    /usr/bin/python3 tools/make_bench_gguf.py /tmp/bench-f16.gguf --type F16
    /usr/bin/python3 tools/make_bench_gguf.py /work/bench-models/tinyllama-q4_k_m.gguf --shape tinyllama --type q4_k_m
    pith-generate /tmp/bench-f16.gguf --prompt-ids 1,2,3 --steps 64 --ignore-eos
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_io import FILE_TYPES, Deferred, llama_quantize_types, write_gguf  # noqa: E402

# hidden, layers, heads, kv heads, intermediate, vocab, tied head
SHAPES = {"bench": (512, 8, 8, 2, 1376, 32000, True),
          "tinyllama": (2048, 22, 32, 4, 5632, 32000, False)}
FLOAT_TYPES = ("F32", "F16", "BF16")
QUANTIZED_FILE_TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
                        "Q2_K", "Q3_K", "Q4_K", "Q5_K")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--type", type=str.upper, choices=FLOAT_TYPES + QUANTIZED_FILE_TYPES, default="F16")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bench")
    parser.add_argument("--pure", action="store_true", help="every matrix in the type (no output/mixture rules)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    hidden, layers, heads, kv_heads, intermediate, vocab, tied = SHAPES[args.shape]
    head_dim = hidden // heads
    rng = np.random.default_rng(args.seed)

    def matrix(rows: int, cols: int) -> Deferred:
        # made when written: the writer makes tensors once each, in file order, so one generator
        # draws them in file order (the values the F32/F16/BF16 bench files always had)
        bound = np.sqrt(3.0 / cols)  # unit variance through the matrix, as pith::random_weights

        def make() -> np.ndarray:
            return rng.uniform(-bound, bound, size=(rows, cols)).astype(np.float32)
        return Deferred((rows, cols), make)

    tensors: dict[str, object] = {"token_embd.weight": matrix(vocab, hidden)}
    for i in range(layers):
        tensors.update({
            f"blk.{i}.attn_norm.weight": np.ones(hidden, np.float32),
            f"blk.{i}.attn_q.weight": matrix(heads * head_dim, hidden),
            f"blk.{i}.attn_k.weight": matrix(kv_heads * head_dim, hidden),
            f"blk.{i}.attn_v.weight": matrix(kv_heads * head_dim, hidden),
            f"blk.{i}.attn_output.weight": matrix(hidden, heads * head_dim),
            f"blk.{i}.ffn_norm.weight": np.ones(hidden, np.float32),
            f"blk.{i}.ffn_gate.weight": matrix(intermediate, hidden),
            f"blk.{i}.ffn_up.weight": matrix(intermediate, hidden),
            f"blk.{i}.ffn_down.weight": matrix(hidden, intermediate),
        })
    tensors["output_norm.weight"] = np.ones(hidden, np.float32)
    if not tied:
        tensors["output.weight"] = matrix(vocab, hidden)
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if args.type in FLOAT_TYPES:
        storage = {name: args.type for name, shape in shapes.items() if len(shape) == 2}
    else:
        storage = llama_quantize_types(args.type, shapes, layers, pure=args.pure)
    metadata = [
        ("general.architecture", "string", "llama"),
        ("general.name", "string", f"pith benchmark model ({args.type})" if args.shape == "bench"
         else f"pith benchmark model ({args.shape}, {args.type})"),
        ("general.file_type", "uint32", FILE_TYPES[args.type]),
        ("llama.context_length", "uint32", 4096 if args.shape == "bench" else 2048),
        ("llama.embedding_length", "uint32", hidden),
        ("llama.block_count", "uint32", layers),
        ("llama.feed_forward_length", "uint32", intermediate),
        ("llama.rope.dimension_count", "uint32", head_dim),
        ("llama.attention.head_count", "uint32", heads),
        ("llama.attention.head_count_kv", "uint32", kv_heads),
        ("llama.attention.layer_norm_rms_epsilon", "float32", 1e-5),
        ("llama.rope.freq_base", "float32", 10000.0),
        ("llama.vocab_size", "uint32", vocab),
    ]
    start = time.monotonic()
    write_gguf(args.output, metadata, tensors, storage)
    seconds = time.monotonic() - start
    kinds = sorted(set(storage.values()))
    print(f"{args.output}: {args.output.stat().st_size / 1e9:.3f} GB ({args.output.stat().st_size} bytes), "
          f"{args.shape}, {args.type} ({'/'.join(kinds)} matrices), written in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
