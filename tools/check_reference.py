# SPDX-License-Identifier: MIT
"""Self-check of the PyTorch reference and of the committed Llama goldens; exits non-zero on failure.

    /usr/bin/python3 tools/check_reference.py [tests/data/llama]

For every case folder (one with an expected.json) it checks that
1. config.json has exactly the Hugging Face keys pith reads, and the safetensors file exactly the
   Hugging Face tensor names and shapes (read back by an independent reader);
2. the reference, run on the stored weights, reproduces expected.json (logits within
   GOLDEN_TOLERANCE, greedy tokens exactly);
3. a loop-by-loop float64 numpy implementation (complex-number RoPE, explicit per-head loops,
   written from the specification and sharing no code with pith_reference.py) agrees with the
   reference run in float64 within INDEPENDENT_TOLERANCE, and float32 stays within
   FLOAT32_TOLERANCE of float64;
4. incremental decoding through the KV cache (one token at a time) equals the full-sequence
   logits: within FLOAT64_TOLERANCE when run in float64 (the paths are the same maths), within
   RELATIVE_FLOAT32_TOLERANCE * max|logit| in float32 (only the summation order differs);
5. the adjacent-pairs ("interleaved") RoPE with q_proj/k_proj rows permuted as llama.cpp's
   convert_hf_to_gguf.py permutes them equals the half layout (full forward and KV-cache decode),
   with the same two bounds, and without the permutation it does not (so the check can fail);
6. for the F16/BF16 cases, the stored weights are the F32 case's weights rounded to nearest even.
It also checks the RoPE kernels themselves: interleaved(P x) == P half(x) per head.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pith_reference import (apply_rope, cast_weights, checkpoint_tensor_names, decode_incremental,  # noqa: E402
                            forward_logits, greedy_decode, load_checkpoint,
                            permute_half_to_interleaved, permute_interleaved_to_half,
                            weights_half_to_interleaved)
from safetensors_io import read_safetensors, round_to_dtype  # noqa: E402

GOLDEN_TOLERANCE = 1e-5       # same code, same weights; only a different BLAS could change the sums
FLOAT64_TOLERANCE = 1e-11     # equivalent computations in float64: rounding of O(10) values only
# In float32 the incremental and permuted paths only reorder sums, yet the logits (up to ~13) carry
# float32 rounding of about 1e-5 themselves (see "float32 vs float64"), so the float32 comparison is
# relative to the largest |logit|: 1e-5 * 13 = 1.3e-4 absolute at most.
RELATIVE_FLOAT32_TOLERANCE = 1e-5
INDEPENDENT_TOLERANCE = 1e-9  # two float64 implementations of the same maths
FLOAT32_TOLERANCE = 1e-3      # float32 rounding through a few layers of O(10) activations
CONFIG_KEYS = {"architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps",
               "rope_theta", "tie_word_embeddings", "max_position_embeddings", "torch_dtype"}

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("  ok    " if condition else "  FAIL  ") + message)
    if not condition:
        failures.append(message)


def independent_logits(arrays: dict[str, np.ndarray], config: dict, ids: list[int]) -> np.ndarray:
    """Float64 logits at every position, written loop by loop from the specification."""
    c = config
    hidden, heads, kv_heads, d = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps, theta, half = c["rms_norm_eps"], c["rope_theta"], c["head_dim"] // 2
    W = {name: a.astype(np.float64) for name, a in arrays.items()}
    n = len(ids)

    def norm(x, w):
        return np.array([row / np.sqrt(np.mean(row * row) + eps) * w for row in x])

    def rotate(vec, pos):  # pair (j, j + d/2) is the complex number vec[j] + i vec[j + d/2]
        z = vec[:half] + 1j * vec[half:]
        z = z * np.exp(1j * pos * theta ** (-2.0 * np.arange(half) / d))
        return np.concatenate((z.real, z.imag))

    h = np.array([W["model.embed_tokens.weight"][t] for t in ids])
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = norm(h, W[p + "input_layernorm.weight"])
        q = x @ W[p + "self_attn.q_proj.weight"].T
        k = x @ W[p + "self_attn.k_proj.weight"].T
        v = x @ W[p + "self_attn.v_proj.weight"].T
        out = np.zeros((n, heads * d))
        for head in range(heads):
            kv = head // (heads // kv_heads)
            for t in range(n):
                qt = rotate(q[t, head * d:(head + 1) * d], t)
                scores = np.array([qt @ rotate(k[s, kv * d:(kv + 1) * d], s) / np.sqrt(d) for s in range(t + 1)])
                probabilities = np.exp(scores - scores.max())
                probabilities /= probabilities.sum()
                out[t, head * d:(head + 1) * d] = sum(probabilities[s] * v[s, kv * d:(kv + 1) * d] for s in range(t + 1))
        h = h + out @ W[p + "self_attn.o_proj.weight"].T
        x = norm(h, W[p + "post_attention_layernorm.weight"])
        gate, up = x @ W[p + "mlp.gate_proj.weight"].T, x @ W[p + "mlp.up_proj.weight"].T
        h = h + (gate / (1.0 + np.exp(-gate)) * up) @ W[p + "mlp.down_proj.weight"].T
    h = norm(h, W["model.norm.weight"])
    head_w = W["model.embed_tokens.weight"] if c["tie_word_embeddings"] else W["lm_head.weight"]
    return h @ head_w.T


def check_rope_kernels() -> None:
    print("rope kernels")
    generator = torch.Generator().manual_seed(7)
    for d in (2, 12, 24, 64):
        x = torch.randn(9, 3, d, generator=generator, dtype=torch.float64)
        positions = torch.arange(100, 109)
        # P acting on one head vector: (P x)[2j + s] = x[s * d/2 + j], the same map as the weight rows.
        perm = lambda t: permute_half_to_interleaved(t.reshape(-1, d).T, 1).T.reshape(t.shape)
        difference = (apply_rope(perm(x), positions, 10000.0, "interleaved") - perm(apply_rope(x, positions, 10000.0, "half"))).abs().max()
        check(float(difference) < 1e-12, f"head_dim {d}: interleaved(P x) == P half(x), max diff {float(difference):.2e}")
    w = torch.randn(5 * 12, 7, generator=generator)
    check(torch.equal(permute_interleaved_to_half(permute_half_to_interleaved(w, 5), 5), w),
          "permute_interleaved_to_half inverts permute_half_to_interleaved")
    rows = permute_half_to_interleaved(torch.arange(24.0)[:, None], 2)[:, 0].long().tolist()
    check(rows == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 12, 18, 13, 19, 14, 20, 15, 21, 16, 22, 17, 23],
          f"2 heads of head_dim 12: interleaved row r takes half-layout row {rows}")


def check_case(folder: Path) -> dict:
    print(folder.name)
    stats = {}
    config_dict = json.loads((folder / "config.json").read_text())
    check(set(config_dict) == CONFIG_KEYS, f"config.json keys {sorted(set(config_dict) ^ CONFIG_KEYS) or 'as listed'}")
    config, weights = load_checkpoint(folder)  # raises on a missing, extra or misshapen tensor
    arrays, dtypes, _ = read_safetensors(folder / "model.safetensors")
    check(list(arrays) == [name for name, _ in checkpoint_tensor_names(config)],
          f"{len(arrays)} tensors, Hugging Face names in model order, dtype {set(dtypes.values())}")

    expected = json.loads((folder / "expected.json").read_text())
    check(list(expected) == ["ids", "greedy_from", "greedy", "logits"], "expected.json keys")
    ids = expected["ids"]
    golden = np.array(expected["logits"], dtype=np.float32)
    check(golden.shape == (len(ids), config.vocab_size) and expected["greedy_from"] == len(ids),
          f"logits shape {golden.shape}, greedy_from {expected['greedy_from']}")

    logits = forward_logits(weights, config, ids)
    difference = float(np.abs(logits.numpy() - golden).max())
    check(difference <= GOLDEN_TOLERANCE, f"reference reproduces expected logits, max diff {difference:.2e}")
    greedy, margins = greedy_decode(weights, config, ids, len(expected["greedy"]))
    check(greedy == expected["greedy"], f"greedy {greedy}, smallest top-2 margin {min(margins):.4f}")

    logits64 = forward_logits(cast_weights(weights, torch.float64), config, ids)
    naive = independent_logits(arrays, config_dict, ids)
    difference = float(np.abs(logits64.numpy() - naive).max())
    check(difference <= INDEPENDENT_TOLERANCE, f"independent float64 loops agree, max diff {difference:.2e}")
    difference = float((logits.double() - logits64).abs().max())
    check(difference <= FLOAT32_TOLERANCE, f"float32 vs float64 reference, max diff {difference:.2e}")
    stats["float32_error"] = difference

    # The two equivalences, first in float64, where they must hold to rounding (the brief's 1e-5 by
    # a wide margin), then in float32, where only the summation order differs, scaled to the logits.
    float32_bound = RELATIVE_FLOAT32_TOLERANCE * max(1.0, float(logits.abs().max()))
    weights64 = cast_weights(weights, torch.float64)
    for label, w, reference, bound in (("float64", weights64, logits64, FLOAT64_TOLERANCE),
                                       ("float32", weights, logits, float32_bound)):
        difference = float((decode_incremental(w, config, ids) - reference).abs().max())
        check(difference <= bound, f"{label}: KV-cache decode == full sequence, max diff {difference:.2e} (bound {bound:.1e})")
        stats[f"incremental_{label}"] = difference
        permuted = weights_half_to_interleaved(w, config)
        difference = float((forward_logits(permuted, config, ids, rope_layout="interleaved") - reference).abs().max())
        check(difference <= bound, f"{label}: interleaved RoPE on permuted q/k == half RoPE, max diff {difference:.2e}")
        stats[f"layout_{label}"] = difference
        difference = float((decode_incremental(permuted, config, ids, rope_layout="interleaved") - reference).abs().max())
        check(difference <= bound, f"{label}: interleaved KV-cache decode == half full sequence, max diff {difference:.2e}")
    unpermuted = float((forward_logits(weights, config, ids, rope_layout="interleaved") - logits).abs().max())
    check(unpermuted > 1e-2, f"interleaved RoPE without the permutation differs by {unpermuted:.2e}")

    stats["max_abs_logit"] = float(np.abs(golden).max())
    return stats


def check_rounded_cases(root: Path) -> None:
    if not (root / "gqa_untied").is_dir():
        return
    base, _, _ = read_safetensors(root / "gqa_untied" / "model.safetensors")
    for name, dtype in (("f16", "F16"), ("bf16", "BF16")):
        if not (root / name).is_dir():
            continue
        print(name)
        arrays, dtypes, _ = read_safetensors(root / name / "model.safetensors")
        same = set(dtypes.values()) == {dtype} and all(np.array_equal(arrays[n], round_to_dtype(base[n], dtype)) for n in base)
        check(same, f"{name}: every tensor is gqa_untied's rounded to {dtype}")
        difference = np.abs(np.array(json.loads((root / name / "expected.json").read_text())["logits"])
                            - np.array(json.loads((root / "gqa_untied" / "expected.json").read_text())["logits"])).max()
        print(f"        logits differ from gqa_untied's by up to {difference:.3g} (the rounding of the weights)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "tests" / "data" / "llama"
    torch.set_num_threads(1)
    check_rope_kernels()
    summary = {folder.name: check_case(folder) for folder in sorted(root.iterdir()) if (folder / "expected.json").is_file()}
    check_rounded_cases(root)
    print("summary")
    for name, stats in summary.items():
        print(f"  {name:14s} max |logit| {stats['max_abs_logit']:7.4f}   float32 - float64 {stats['float32_error']:.2e}   "
              f"incremental - full {stats['incremental_float64']:.1e} (f64) {stats['incremental_float32']:.1e} (f32)   "
              f"interleaved - half {stats['layout_float64']:.1e} (f64) {stats['layout_float32']:.1e} (f32)")
    if not summary:
        failures.append(f"no case folders in {root}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
