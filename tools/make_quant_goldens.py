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
