# SPDX-License-Identifier: MIT
"""A small GGUF v3 writer and reader with numpy alone (F32 tensors, scalar and string metadata).

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
  file order; tensors {name: float32 array (row-major)} in file order, stored as F32 or as the
  type `storage` gives the name (F16, BF16).
- `read_gguf(path)`: returns (metadata {key: (type name, value)}, tensors {name: float32 array
  (row-major shape)}, infos [(name, ne, type, offset)], alignment).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

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


def _stored(array: np.ndarray, storage: str) -> tuple[int, bytes]:
    """The ggml type number and little-endian bytes of `array` stored as F32, F16 or BF16 (round to
    nearest even)."""
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
    each as F32 unless `storage` names another type for it ("F16", "BF16")."""
    storage = storage or {}
    alignment = DEFAULT_ALIGNMENT
    for key, type_name, value in metadata:
        if key == "general.alignment":
            if type_name != "uint32" or value <= 0 or value & (value - 1):
                raise ValueError("general.alignment must be a uint32 power of two")
            alignment = value
    header = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(metadata))
    for key, type_name, value in metadata:
        header += _string(key) + struct.pack("<I", VALUE_TYPES[type_name][0]) + _value(type_name, value)
    blobs, offset = [], 0
    for name, array in tensors.items():
        ggml_type, blob = _stored(array, storage.get(name, "F32"))
        ne = list(reversed(array.shape))  # fastest-varying first
        header += _string(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        header += struct.pack("<IQ", ggml_type, offset)
        blobs.append(blob + b"\0" * _padding(len(blob), alignment))
        offset += len(blobs[-1])
    header += b"\0" * _padding(len(header), alignment)
    with open(path, "wb") as f:
        f.write(header)
        for blob in blobs:
            f.write(blob)


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
        if ggml_type != GGML_TYPE_F32 or offset % alignment:
            raise ValueError(f"{path}: tensor {name}: type {ggml_type} or offset {offset} not supported here")
        count = int(np.prod(ne, dtype=np.int64))
        begin = data_start + offset
        values = np.frombuffer(data, dtype="<f4", count=count, offset=begin).astype(np.float32)
        tensors[name] = values.reshape(list(reversed(ne)))
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
