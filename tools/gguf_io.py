# SPDX-License-Identifier: MIT
"""A small GGUF v3 writer and reader with numpy alone (F32, F16, BF16 and the block-quantized types of
tools/pith_quant.py; scalar and string metadata).

The format (llama.cpp's ggml/docs/gguf.md), all little-endian:
    magic "GGUF" (4 bytes), version uint32 = 3, tensor_count uint64, metadata_kv_count uint64;
    metadata_kv_count times: key (gguf string), value type uint32, value;
    tensor_count times (the tensor infos): name (gguf string), n_dims uint32, ne[n_dims] uint64
        listed fastest-varying first (ne[0] is the row length, so a row-major [rows, cols] array
        has ne = [cols, rows]), ggml type uint32 (0 = F32), offset uint64 (from the start of the
        data area, a multiple of the alignment);
    zero padding to a multiple of `general.alignment` (default 32), then the data area: each
    tensor's bytes at its offset, zero padding between tensors.
A gguf string is a uint64 byte length followed by UTF-8 bytes (no terminator).
Metadata value types written here: uint32 (4), int32 (5), float32 (6), bool (7), string (8),
uint64 (10), float64 (12); the reader also accepts the other scalars and arrays of scalars/strings.

Functions:
- `write_gguf(path, metadata, tensors, storage)`: metadata is a list of (key, type name, value) in
  file order; tensors {name: float32 array (row-major), or a `Deferred(shape, make)` whose array is
  made only when it is written} in file order, stored as F32 or as the type `storage` gives the
  name: F16, BF16, or a block type of pith_quant (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
  Q5_K, Q6_K, IQ4_NL, IQ4_XS: rows quantized along ne[0] by the reference quantizer). When any
  tensor is block-quantized, `general.quantization_version = 2` is added unless given (note §5, §6).
- `llama_quantize_types(ftype, shapes, n_layers)`: the type llama-quantize gives each tensor for a
  file type (note §5: the Q4_K_M / Q5_K_M mixtures, the output / token_embd rules, the fallbacks for
  row lengths that are not a multiple of the block); `pure=True` gives every matrix the base type.
  `FILE_TYPES[ftype]` is the value of `general.file_type`.
- `read_gguf(path)`: returns (metadata {key: (type name, value)}, tensors {name: float32 array
  (row-major shape), dequantized for F16, BF16 and block types}, infos [(name, ne, type, offset)],
  alignment).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

import pith_quant

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
GGML_TYPE_F32 = 0
VALUE_TYPES = {"uint8": (0, "<B"), "int8": (1, "<b"), "uint16": (2, "<H"), "int16": (3, "<h"),
               "uint32": (4, "<I"), "int32": (5, "<i"), "float32": (6, "<f"), "bool": (7, "<?"),
               "string": (8, None), "array": (9, None), "uint64": (10, "<Q"), "int64": (11, "<q"),
               "float64": (12, "<d")}
TYPE_NAMES = {number: name for name, (number, _) in VALUE_TYPES.items()}


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(type_name: str, value) -> bytes:
    number, fmt = VALUE_TYPES[type_name]
    if type_name == "string":
        return _string(value)
    if type_name == "array":
        raise ValueError("write_gguf: arrays are not needed here and not written")
    return struct.pack(fmt, value)


def _padding(size: int, alignment: int) -> int:
    return (alignment - size % alignment) % alignment


class Deferred:
    """A tensor of `shape` whose float32 values `make()` returns when the writer reaches it (so a
    large model never holds all its float32 weights at once)."""

    def __init__(self, shape, make):
        self.shape, self.make = tuple(shape), make


QUANTIZED_TYPES = set(pith_quant.WEIGHT_TYPES)
TYPE_SIZES = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), **{t: pith_quant.BLOCK[t] for t in QUANTIZED_TYPES}}
GGML_TYPE_NUMBERS = {"F32": 0, "F16": 1, "BF16": 30, **{t: pith_quant.GGML_TYPE[t] for t in QUANTIZED_TYPES}}
GGML_TYPE_NAMES = {number: name for name, number in GGML_TYPE_NUMBERS.items()}
# general.file_type (llama.cpp's LlamaFileType, note §6). Pure K files use the number of the mixture
# whose base type they carry (llama-quantize --pure writes the ftype it was given).
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
              "Q3_K_S": 11, "Q3_K": 12, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K": 15, "Q4_K_M": 15,
              "Q5_K_S": 16, "Q5_K": 17, "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30, "BF16": 32}
QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION


def tensor_bytes(shape, storage: str) -> int:
    """Bytes of a row-major tensor of `shape` stored as `storage` (note §6: row_bytes · rows)."""
    cols = int(shape[-1])
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    elements, size = TYPE_SIZES[storage]
    if cols % elements:
        raise ValueError(f"{storage}: row length {cols} is not a multiple of {elements}")
    return rows * (cols // elements) * size


def _stored(array: np.ndarray, storage: str) -> tuple[int, bytes]:
    """The ggml type number and little-endian bytes of `array` stored as F32, F16 or BF16 (round to
    nearest even), or quantized row by row (rows along the last axis) with pith_quant."""
    if storage in QUANTIZED_TYPES:
        values = np.asarray(array, np.float32)
        return GGML_TYPE_NUMBERS[storage], pith_quant.quantize(values.reshape(-1, values.shape[-1]), storage).tobytes()
    values = np.ascontiguousarray(array, dtype="<f4")
    if storage == "F32":
        return GGML_TYPE_F32, values.tobytes()
    if storage == "F16":
        return 1, values.astype("<f2").tobytes()
    if storage == "BF16":
        bits = values.view("<u4").astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
        return 30, rounded.tobytes()
    raise ValueError(f"unknown storage type {storage}")


def write_gguf(path: Path, metadata: list[tuple[str, str, object]], tensors: dict[str, np.ndarray],
               storage: dict[str, str] | None = None) -> None:
    """Writes a GGUF v3 file: metadata (key, type name, value) in order, then the tensors in order,
    each as F32 unless `storage` names another type for it ("F16", "BF16", "Q4_K", ...). Tensors are
    made (Deferred), converted and written one at a time."""
    storage = storage or {}
    for name, kind in storage.items():
        if kind not in TYPE_SIZES:
            raise ValueError(f"tensor {name}: unknown storage type {kind}")
    metadata = list(metadata)
    if any(storage.get(name) in QUANTIZED_TYPES for name in tensors) and \
            not any(key == "general.quantization_version" for key, _, _ in metadata):
        metadata.append(("general.quantization_version", "uint32", QUANTIZATION_VERSION))
    alignment = DEFAULT_ALIGNMENT
    for key, type_name, value in metadata:
        if key == "general.alignment":
            if type_name != "uint32" or value <= 0 or value & (value - 1):
                raise ValueError("general.alignment must be a uint32 power of two")
            alignment = value
    header = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(metadata))
    for key, type_name, value in metadata:
        header += _string(key) + struct.pack("<I", VALUE_TYPES[type_name][0]) + _value(type_name, value)
    offset = 0
    for name, array in tensors.items():
        kind = storage.get(name, "F32")
        ne = list(reversed(array.shape))  # fastest-varying first
        header += _string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        header += struct.pack("<IQ", GGML_TYPE_NUMBERS[kind], offset)
        size = tensor_bytes(array.shape, kind)
        offset += size + _padding(size, alignment)
    header += b"\0" * _padding(len(header), alignment)
    with open(path, "wb") as f:
        f.write(header)
        for name, array in tensors.items():
            kind = storage.get(name, "F32")
            values = array.make() if isinstance(array, Deferred) else array
            if tuple(values.shape) != tuple(array.shape):
                raise ValueError(f"tensor {name}: made {values.shape}, declared {array.shape}")
            _, blob = _stored(values, kind)
            assert len(blob) == tensor_bytes(array.shape, kind)
            f.write(blob + b"\0" * _padding(len(blob), alignment))


def use_more_bits(i: int, n: int) -> bool:
    """llama-quantize's layer rule (note §5): about half the layers, the first and last eighths."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


MIXTURES = {"Q4_K_M": ("Q4_K", "Q5_K"), "Q5_K_M": ("Q5_K", "Q6_K")}  # base type, fused attn_qkv type
# note §5: the type used when a row length is not a multiple of the chosen type's block
FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "IQ4_XS": "IQ4_NL"}


def quantized_tensor(name: str, shape) -> bool:
    """note §5: names ending in 'weight' with >= 2 dimensions, not norms, routers or position embeddings."""
    return (name.endswith("weight") and len(shape) >= 2 and not name.endswith("_norm.weight")
            and "ffn_gate_inp" not in name and "position_embd" not in name and "token_types" not in name)


def llama_quantize_types(ftype: str, shapes: dict[str, tuple], n_layers: int, pure: bool = False) -> dict[str, str]:
    """{name: storage type} as llama-quantize chooses it for `ftype` (note §5) for the tensors (in
    file order, row-major shapes) of a Llama model; tensors it leaves alone are absent (stay F32).
    Mixtures: Q4_K_M, Q5_K_M. Single types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q6_K, IQ4_NL, IQ4_XS and, with
    pure=True, also Q2_K, Q3_K, Q4_K, Q5_K. Without pure, output.weight (or a tied token_embd) is Q6_K
    (Q8_0 when its rows are not whole blocks, or when ftype is Q8_0), as llama-quantize writes it."""
    base, qkv_type = MIXTURES.get(ftype, (ftype, ftype))
    if base not in QUANTIZED_TYPES:
        raise ValueError(f"unknown file type {ftype}")
    if not pure and ftype in ("Q2_K", "Q3_K", "Q4_K", "Q5_K"):
        raise ValueError(f"{ftype}: llama-quantize's own mixture of this type is not modelled here; use pure=True")
    tied = "output.weight" not in shapes
    counters = {"attn_v": 0, "ffn_down": 0}
    out = {}
    for name, shape in shapes.items():
        if not quantized_tensor(name, shape):
            continue
        cols = int(shape[-1])
        kind = base
        if pure:
            pass
        elif name == "output.weight" or (tied and name == "token_embd.weight"):
            if cols % pith_quant.BLOCK[base][0]:
                kind = "Q8_0"
            elif base != "Q8_0":
                kind = "Q6_K"
        elif ftype in MIXTURES:
            for key in ("attn_v", "ffn_down"):
                if f".{key}." in name or name.startswith(f"{key}."):
                    kind = "Q6_K" if use_more_bits(counters[key], n_layers) else base
                    counters[key] += 1
            if ".attn_qkv." in name:
                kind = qkv_type
        if cols % pith_quant.BLOCK[kind][0]:
            if kind not in FALLBACK:
                raise ValueError(f"{name}: row length {cols} is not a multiple of {kind}'s block")
            kind = FALLBACK[kind]
            if cols % 32:
                kind = "F16"
        out[name] = kind
    return out


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def unpack(self, fmt: str):
        values = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.unpack("<Q")
        text = self.data[self.position:self.position + length].decode("utf-8")
        self.position += length
        return text

    def value(self, number: int):
        name = TYPE_NAMES[number]
        if name == "string":
            return self.string()
        if name == "array":
            element, count = self.unpack("<IQ")
            return [self.value(element) for _ in range(count)]
        return self.unpack(VALUE_TYPES[name][1])


def read_gguf(path: Path):
    """(metadata {key: (type name, value)}, tensors {name: float32 array}, infos [(name, ne, type, offset)], alignment)."""
    data = Path(path).read_bytes()
    r = _Reader(data)
    if data[:4] != GGUF_MAGIC:
        raise ValueError(f"{path}: not a GGUF file")
    r.position = 4
    version, tensor_count, kv_count = r.unpack("<IQQ")
    if version != GGUF_VERSION:
        raise ValueError(f"{path}: GGUF version {version}, expected {GGUF_VERSION}")
    metadata = {}
    for _ in range(kv_count):
        key = r.string()
        number = r.unpack("<I")
        metadata[key] = (TYPE_NAMES[number], r.value(number))
    alignment = metadata.get("general.alignment", ("uint32", DEFAULT_ALIGNMENT))[1]
    infos = []
    for _ in range(tensor_count):
        name = r.string()
        n_dims = r.unpack("<I")
        ne = [r.unpack("<Q") for _ in range(n_dims)]
        ggml_type, offset = r.unpack("<IQ")
        infos.append((name, ne, ggml_type, offset))
    data_start = r.position + _padding(r.position, alignment)
    tensors = {}
    for name, ne, ggml_type, offset in infos:
        if ggml_type not in GGML_TYPE_NAMES or offset % alignment:
            raise ValueError(f"{path}: tensor {name}: type {ggml_type} or offset {offset} not supported here")
        kind = GGML_TYPE_NAMES[ggml_type]
        shape = list(reversed(ne))
        size = tensor_bytes(shape, kind)
        begin = data_start + offset
        raw = np.frombuffer(data, dtype=np.uint8, count=size, offset=begin)
        if kind == "F32":
            values = raw.view("<f4").astype(np.float32)
        elif kind == "F16":
            values = raw.view("<f2").astype(np.float32)
        elif kind == "BF16":
            values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            values = pith_quant.dequantize(raw, kind, int(ne[0]))
        tensors[name] = values.reshape(shape)
    return metadata, tensors, infos, alignment


# Hugging Face -> GGUF tensor names of the Llama architecture (llama.cpp's convert_hf_to_gguf.py),
# plus the folded attention-residual scores of docs/layers.md. Layer names use "{i}".
LLAMA_GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# folded residual pseudo-queries: GGUF name -> (res_norm name, res_proj name); score = norm ⊙ proj[0]
LLAMA_GGUF_RES_SCORES = {
    "blk.{i}.attn_res_score.weight": ("model.layers.{i}.self_attention_res_norm.weight",
                                      "model.layers.{i}.self_attention_res_proj.weight"),
    "blk.{i}.ffn_res_score.weight": ("model.layers.{i}.mlp_res_norm.weight", "model.layers.{i}.mlp_res_proj.weight"),
    "output_res_score.weight": ("model.output_attn_res_norm.weight", "model.output_attn_res_proj.weight"),
}
