# SPDX-License-Identifier: MIT
"""Writes the GGUF quantization goldens in tests/data/quant/ with tools/pith_quant.py (fixed seeds).

    /usr/bin/python3 tools/make_quant_goldens.py                 # blocks/, quantize/ and models/
    /usr/bin/python3 tools/make_quant_goldens.py --parts blocks,quantize
    /usr/bin/python3 tools/make_quant_goldens.py --out DIR       # writes somewhere else

Layout (all binary files little-endian, no header; tools/README.md repeats this):
    index.json               what every file holds (names, counts, byte sizes, labels)
    blocks/<type>.bin        `count` blocks of `block_bytes` raw bytes each
    blocks/<type>.f32        count × block_elements float32: the dequantization (note §2) of each block
    quantize/input.f32       rows × cols float32: the rows every quantizer is given
    quantize/<type>.bin      rows × row_bytes: the reference quantizer's bytes for input.f32 (note §4, §3.3)
    models/<type>/model.gguf, expected.json    quantized random Llama checkpoints (see write_models)
Types are named as in note §1.1 ("Q4_K"); file names use the lower-case name ("q4_k.bin").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pith_quant as pq  # noqa: E402

f32 = np.float32
BLOCK_TYPES = pq.WEIGHT_TYPES + ["Q8_1", "Q8_K"]
QUANTIZE_TYPES = pq.WEIGHT_TYPES + ["Q8_1", "Q8_K"]  # Q8_0 is both the weight and the activation quantizer
RANDOM_BLOCKS_32 = 40   # per 32-element type
RANDOM_BLOCKS_256 = 20  # per 256-element type (each block is 1 KB of float32 values)
QUANTIZE_COLS = 512     # two super-blocks per row, 16 blocks of 32


# f16 scale fields of each block format: byte offsets of d (and of m / dmin)
SCALE_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q8_1": [0],
                "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
                "IQ4_NL": [0], "IQ4_XS": [0]}
# byte ranges that hold quants, sub-block scales or the high bits (everything but the f16 scales)
F16_MAX, F16_NEG_ZERO, F16_SMALLEST_SUBNORMAL, F16_LARGEST_SUBNORMAL, F16_ONE, F16_MINUS_ONE = \
    0x7BFF, 0x8000, 0x0001, 0x03FF, 0x3C00, 0xBC00


def _set_f16(block: np.ndarray, at: int, bits: int) -> None:
    block[at], block[at + 1] = bits & 0xFF, bits >> 8


def edge_blocks(name: str, rng) -> list[tuple[str, np.ndarray]]:
    """Hand-made blocks: zero, extreme and special f16 scales, quants at their extremes."""
    elements, nbytes = pq.BLOCK[name]
    cases = [("all_zero_bytes", np.zeros(nbytes, np.uint8))]
    if name == "Q8_K":
        for label, d in (("max_f32_scale", np.finfo(f32).max / f32(256)), ("negative_zero_scale", f32(-0.0)),
                         ("subnormal_scale", f32(1e-40)), ("one", f32(1.0))):
            for quant_label, quants in (("random", rng.integers(-128, 128, 256)), ("min", np.full(256, -128)),
                                        ("max", np.full(256, 127))):
                block = np.zeros(nbytes, np.uint8)
                block[0:4] = np.array([d], "<f4").view(np.uint8)
                block[4:260] = quants.astype(np.int8).view(np.uint8)
                sums = quants.reshape(16, 16).sum(axis=1).astype("<i2")
                block[260:292] = sums.view(np.uint8)
                cases.append((f"{label}_{quant_label}_quants", block))
        return cases
    scale_fields = SCALE_FIELDS[name]
    for label, bits in (("max_f16_scales", F16_MAX), ("negative_zero_scales", F16_NEG_ZERO),
                        ("smallest_subnormal_scales", F16_SMALLEST_SUBNORMAL),
                        ("largest_subnormal_scales", F16_LARGEST_SUBNORMAL), ("negative_scales", F16_MINUS_ONE)):
        block = rng.integers(0, 256, nbytes, dtype=np.uint8)
        for at in scale_fields:
            _set_f16(block, at, bits)
        cases.append((label, block))
    for label, fill in (("quants_all_ones_bits", 0xFF), ("quants_all_zero_bits", 0x00), ("quants_0x80", 0x80),
                        ("quants_0x7F", 0x7F), ("quants_0x55", 0x55)):
        block = np.full(nbytes, fill, np.uint8)
        for at in scale_fields:
            _set_f16(block, at, F16_ONE)
        cases.append((label, block))
    block = np.full(nbytes, 0xFF, np.uint8)  # every field at its maximum, largest finite f16 scales
    for at in scale_fields:
        _set_f16(block, at, F16_MAX)
    cases.append(("all_fields_max", block))
    return cases


def write_blocks(root: Path, rng) -> dict:
    folder = root / "blocks"
    folder.mkdir(parents=True, exist_ok=True)
    index = {}
    for name in BLOCK_TYPES:
        elements, nbytes = pq.BLOCK[name]
        count = RANDOM_BLOCKS_32 if elements == 32 else RANDOM_BLOCKS_256
        random = pq.random_blocks(name, count, rng)
        edges = edge_blocks(name, rng)
        blocks = np.concatenate([random] + [b[None] for _, b in edges])
        values = pq.dequantize_blocks(blocks, name)
        stem = name.lower()
        (folder / f"{stem}.bin").write_bytes(blocks.tobytes())
        (folder / f"{stem}.f32").write_bytes(values.astype("<f4").tobytes())
        labels = ["random"] * count + [label for label, _ in edges]
        index[name] = {"bytes": f"blocks/{stem}.bin", "values": f"blocks/{stem}.f32", "count": len(blocks),
                       "block_bytes": nbytes, "block_elements": elements, "labels": labels,
                       "non_finite_values": int((~np.isfinite(values)).sum())}
    return index


def quantize_input(rng) -> tuple[np.ndarray, list[str]]:
    """Rows of QUANTIZE_COLS float32 values that exercise the quantizers' branches."""
    cols = QUANTIZE_COLS
    rows, labels = [], []

    def add(label, row):
        rows.append(np.asarray(row, f32))
        labels.append(label)

    add("normal_std_1", rng.normal(size=cols))
    add("normal_std_1e-3", rng.normal(size=cols) * 1e-3)
    add("uniform_plus_minus_3e4", rng.uniform(-3e4, 3e4, size=cols))  # large, below f16 overflow of every scale
    add("laplace_std_0.2", rng.laplace(scale=0.2, size=cols))
    add("positive_uniform", rng.uniform(0.1, 2.0, size=cols))       # all above zero: affine mins clamp at 0
    add("negative_extremes", rng.uniform(-1.0, -0.5, size=cols))    # all negative, maxima at the negative end
    halves = rng.integers(-254, 255, size=cols) / 2.0               # x·id lands on .5: roundf vs nint ties
    halves[::32] = 127.0
    add("half_integer_ties_amax_127", halves)
    quarters = rng.integers(-32, 33, size=cols) / 4.0
    quarters[::32] = -8.0
    add("quarter_ties_max_minus_8", quarters)
    small = rng.integers(-4, 5, size=cols).astype(np.float64)        # few distinct levels: ties in the K searches
    add("small_integers", small)
    zeros = np.zeros(cols)
    zeros[1::3] = -0.0
    add("zeros_and_negative_zeros", zeros)
    spike = np.zeros(cols)
    spike[37] = 1000.0
    spike[300] = -1e-3
    spike[301:320] = rng.normal(size=19) * 1e-6
    add("single_spikes", spike)
    equal_magnitude = rng.normal(size=cols) * 0.1
    equal_magnitude[0::32], equal_magnitude[5::32] = -1.0, 1.0      # first occurrence of max |x| decides the sign
    equal_magnitude[16::64], equal_magnitude[17::64] = 1.5, -1.5
    add("opposite_equal_magnitudes", equal_magnitude)
    add("constant_0.7", np.full(cols, 0.7))                          # flat blocks: max == min
    tiny = rng.normal(size=cols) * 1e-16                             # below GROUP_MAX_EPS in places, subnormal f16 scales
    tiny[256:] = rng.normal(size=256) * 1e-6
    add("tiny_values", tiny)
    subnormal = rng.normal(size=cols).astype(f32) * f32(1e-39)        # float32 subnormals
    add("float32_subnormals", subnormal)
    return np.stack(rows).astype(f32), labels


def write_quantize(root: Path, rng) -> dict:
    folder = root / "quantize"
    folder.mkdir(parents=True, exist_ok=True)
    x, labels = quantize_input(rng)
    (folder / "input.f32").write_bytes(x.astype("<f4").tobytes())
    index = {"input": "quantize/input.f32", "rows": x.shape[0], "cols": x.shape[1], "row_labels": labels,
             "outputs": {}}
    for name in QUANTIZE_TYPES:
        q = pq.quantize(x, name)
        (folder / f"{name.lower()}.bin").write_bytes(q.tobytes())
        index["outputs"][name] = {"bytes": f"quantize/{name.lower()}.bin", "row_bytes": q.shape[1]}
    return index


# ---------------------------------------------------------------------------------------------
# quantized golden models

# (folder, llama-quantize file type, pure): pure files give every matrix the type (output and
# token_embd included) so a test exercises that type alone; q4_k_m and q5_k_m are the mixtures of
# note §5 exactly as llama-quantize chooses them.
MODEL_CASES = [("q8_0", "Q8_0", True), ("q4_0", "Q4_0", True), ("q4_1", "Q4_1", True), ("q5_0", "Q5_0", True),
               ("q5_1", "Q5_1", True), ("q4_k_m", "Q4_K_M", False), ("q5_k_m", "Q5_K_M", False),
               ("q6_k", "Q6_K", True), ("q2_k", "Q2_K", True), ("q3_k", "Q3_K", True), ("iq4_nl", "IQ4_NL", True),
               ("iq4_xs", "IQ4_XS", True)]
MODEL_SEED_START = 1400
MODEL_PROMPT_LENGTH = 12
MODEL_GREEDY_STEPS = 8
# Each greedy step of every quantized golden beats its runner-up by at least this much: the C++
# kernels quantize activations to 8 bits, an error of the order of Q8_0 weights', which moves this
# model's logits (|logit| up to ~30) by up to ~0.5 (the q8_0 golden's max |logit - float32 model's|
# is 0.48); a smaller margin could flip a token without any bug.
MIN_MODEL_GREEDY_MARGIN = 0.75
MIN_MODEL_DISTINCT_GREEDY = 5


def model_config():
    from pith_reference import LlamaConfig
    # hidden 256 so every matrix is whole K-quant super-blocks; GQA (2 query heads per kv head)
    return LlamaConfig(hidden_size=256, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=64, vocab_size=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=False, max_position_embeddings=64)


def gguf_model_tensors(arrays: dict, config) -> dict:
    """llama.cpp names and order; q/k rows permuted half -> interleaved per head (as convert_hf_to_gguf)."""
    import torch
    from gguf_io import LLAMA_GGUF_NAMES
    from pith_reference import permute_half_to_interleaved
    out = {}

    def put(pattern, layer=None):
        hf = pattern.replace("{i}", str(layer))
        tensor = arrays[hf]
        if hf.endswith("q_proj.weight"):
            tensor = permute_half_to_interleaved(torch.from_numpy(tensor), config.num_attention_heads).numpy()
        elif hf.endswith("k_proj.weight"):
            tensor = permute_half_to_interleaved(torch.from_numpy(tensor), config.num_key_value_heads).numpy()
        out[LLAMA_GGUF_NAMES[pattern].replace("{i}", str(layer))] = np.ascontiguousarray(tensor)

    put("model.embed_tokens.weight")
    for i in range(config.num_hidden_layers):
        for pattern in LLAMA_GGUF_NAMES:
            if pattern.startswith("model.layers."):
                put(pattern, i)
    put("model.norm.weight")
    if not config.tie_word_embeddings:
        put("lm_head.weight")
    return out


def hf_arrays_from_gguf(tensors: dict, config) -> dict:
    """Inverse of gguf_model_tensors on the (dequantized) tensors read back from a file."""
    import torch
    from gguf_io import LLAMA_GGUF_NAMES
    from pith_reference import permute_interleaved_to_half
    out = {}
    for pattern, gguf in LLAMA_GGUF_NAMES.items():
        layers = range(config.num_hidden_layers) if "{i}" in pattern else [None]
        for i in layers:
            name = gguf.replace("{i}", str(i))
            if name not in tensors:
                continue
            tensor = tensors[name]
            if name.endswith("attn_q.weight"):
                tensor = permute_interleaved_to_half(torch.from_numpy(tensor.copy()), config.num_attention_heads).numpy()
            elif name.endswith("attn_k.weight"):
                tensor = permute_interleaved_to_half(torch.from_numpy(tensor.copy()), config.num_key_value_heads).numpy()
            out[pattern.replace("{i}", str(i))] = np.ascontiguousarray(tensor, np.float32)
    return out


def model_metadata(config, ftype: str) -> list:
    from gguf_io import FILE_TYPES
    c = config
    return [
        ("general.architecture", "string", "llama"),
        ("general.name", "string", f"pith quantized golden ({ftype})"),
        ("general.file_type", "uint32", FILE_TYPES[ftype]),
        ("general.alignment", "uint32", 32),
        ("llama.context_length", "uint32", c.max_position_embeddings),
        ("llama.embedding_length", "uint32", c.hidden_size),
        ("llama.feed_forward_length", "uint32", c.intermediate_size),
        ("llama.block_count", "uint32", c.num_hidden_layers),
        ("llama.rope.dimension_count", "uint32", c.head_dim),
        ("llama.attention.head_count", "uint32", c.num_attention_heads),
        ("llama.attention.head_count_kv", "uint32", c.num_key_value_heads),
        ("llama.attention.layer_norm_rms_epsilon", "float32", c.rms_norm_eps),
        ("llama.rope.freq_base", "float32", c.rope_theta),
        ("llama.vocab_size", "uint32", c.vocab_size),
    ]


def write_model_case(folder: Path, ftype: str, pure: bool, arrays: dict, ids: list, float_logits, config,
                     seed: int) -> dict:
    """Writes folder/model.gguf and expected.json; returns the greedy margins and logit differences."""
    from gguf_io import llama_quantize_types, read_gguf, write_gguf
    from make_llama_goldens import expected_json
    from pith_reference import forward_logits, greedy_decode, weights_from_numpy
    tensors = gguf_model_tensors(arrays, config)
    storage = llama_quantize_types(ftype, {n: t.shape for n, t in tensors.items()}, config.num_hidden_layers, pure)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.gguf"
    write_gguf(path, model_metadata(config, ftype), tensors, storage)
    _, read_back, _, _ = read_gguf(path)
    weights = weights_from_numpy(hf_arrays_from_gguf(read_back, config))
    logits = forward_logits(weights, config, ids).numpy()
    greedy, margins = greedy_decode(weights, config, ids, MODEL_GREEDY_STEPS)
    summary = {"greedy": greedy, "smallest_greedy_margin": float(min(margins)), "margins": [float(m) for m in margins],
               "max_abs_logit_difference_from_float32_model": float(np.abs(logits - float_logits).max()),
               "max_abs_logit": float(np.abs(logits).max()), "bytes": path.stat().st_size,
               "tensor_types": storage}
    text = expected_json(ids, logits, greedy)
    extra = {"seed": seed, "file_type": ftype, "pure": pure, "general.file_type": model_metadata(config, ftype)[2][2],
             "max_abs_logit_difference_from_float32_model": summary["max_abs_logit_difference_from_float32_model"],
             "greedy_margins": [round(m, 4) for m in summary["margins"]],
             "tensor_types": storage}
    summary["extra"] = extra
    (folder / "expected.json").write_text(text[:-3] + ",\n" + ",\n".join(
        f'  "{k}": {json.dumps(v)}' for k, v in extra.items() if v is not None) + "\n}\n")
    return summary


def model_checkpoint(config, seed: int):
    """make_llama_goldens.random_checkpoint's weights and prompt, with every projection rescaled to
    standard deviation 1/sqrt(in_features) (unit gain: at hidden 256 the 0.2·N projections of the
    small goldens amplify each layer ~3x, and the quantization noise with them)."""
    from make_llama_goldens import PROJECTION_STD, random_checkpoint
    arrays, ids = random_checkpoint(config, seed, MODEL_PROMPT_LENGTH)
    for name, array in arrays.items():
        if array.ndim == 2 and name not in ("model.embed_tokens.weight", "lm_head.weight"):
            arrays[name] = (array * np.float32(1.0 / (PROJECTION_STD * np.sqrt(array.shape[1])))).astype(np.float32)
    return arrays, ids


def write_models(root: Path) -> dict:
    """Each case: the first seed from MODEL_SEED_START + 1000·case whose float32 model and quantized
    model both continue greedily with clear margins and varied tokens."""
    import torch
    from pith_reference import forward_logits, greedy_decode, weights_from_numpy
    torch.set_num_threads(1)  # one summation order
    config = model_config()
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / "config.json").write_text(json.dumps(config.to_hf_dict("float32"), indent=2) + "\n")
    index = {"config": "models/config.json", "prompt_length": MODEL_PROMPT_LENGTH,
             "greedy_steps": MODEL_GREEDY_STEPS, "cases": {}}
    for number, (folder, ftype, pure) in enumerate(MODEL_CASES):
        for seed in range(MODEL_SEED_START + 1000 * number, MODEL_SEED_START + 1000 * number + 1000):
            arrays, ids = model_checkpoint(config, seed)
            float_weights = weights_from_numpy(arrays)
            float_greedy, _ = greedy_decode(float_weights, config, ids, MODEL_GREEDY_STEPS)
            float_logits = forward_logits(float_weights, config, ids).numpy()
            r = write_model_case(root / "models" / folder, ftype, pure, arrays, ids, float_logits, config, seed)
            if r["smallest_greedy_margin"] >= MIN_MODEL_GREEDY_MARGIN and len(set(r["greedy"])) >= MIN_MODEL_DISTINCT_GREEDY:
                break
        else:
            raise SystemExit(f"{folder}: no seed gives a clear greedy continuation")
        print(f"{folder}: seed {seed}, greedy {r['greedy']} (float32 model {float_greedy}), margin "
              f"{r['smallest_greedy_margin']:.3f}, max |logit| {r['max_abs_logit']:.2f}, max |logit - float32 "
              f"model's| {r['max_abs_logit_difference_from_float32_model']:.3f}, {r['bytes']} B")
        index["cases"][folder] = {"gguf": f"models/{folder}/model.gguf", "expected": f"models/{folder}/expected.json",
                                  "file_type": ftype, "pure": pure, "seed": seed, "bytes": r["bytes"],
                                  "max_abs_logit_difference_from_float32_model":
                                      r["max_abs_logit_difference_from_float32_model"],
                                  "smallest_greedy_margin": r["smallest_greedy_margin"]}
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "data" / "quant")
    parser.add_argument("--parts", default="blocks,quantize,models")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    index_path = args.out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index["layout"] = ("little-endian, no headers; blocks/<type>.bin: count x block_bytes; blocks/<type>.f32: "
                       "count x block_elements float32 (dequantized); quantize/input.f32: rows x cols float32; "
                       "quantize/<type>.bin: rows x row_bytes (reference quantizer output)")
    if "blocks" in parts:
        index["blocks"] = write_blocks(args.out, np.random.default_rng(20261130))
    if "quantize" in parts:
        index["quantize"] = write_quantize(args.out, np.random.default_rng(20261131))
    if "models" in parts:
        index["models"] = write_models(args.out)
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
