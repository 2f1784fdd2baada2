# SPDX-License-Identifier: MIT
"""Reads and writes safetensors files with numpy alone (no `safetensors` package).

The format: an 8-byte little-endian unsigned header length N, then N bytes of UTF-8 JSON
    {"<name>": {"dtype": "F32" | "F16" | "BF16", "shape": [...], "data_offsets": [begin, end]},
     ..., "__metadata__": {"<key>": "<string>", ...}}
padded with spaces so the data area starts at a multiple of 8 bytes, then the data area: every
tensor's raw little-endian, row-major bytes, `data_offsets` relative to the start of the data area.

Functions:
- `float32_to_bf16_bits(a)`: bfloat16 bit patterns (uint16) of a float32 array, rounded to nearest
  with ties to even (the top 16 bits of the float32 after adding 0x7FFF + the lowest kept bit).
- `bf16_bits_to_float32(b)`: exact inverse widening (bits << 16).
- `round_to_dtype(a, dtype)`: the float32 values a float32 array takes after storage as dtype.
- `write_safetensors(path, tensors, dtype, metadata)`: writes float32 arrays, stored as dtype, in the
  given order, contiguous, without gaps.
- `read_safetensors(path)`: returns ({name: float32 array}, {name: dtype}, metadata).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


def float32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """bfloat16 bits of float32 values, round to nearest, ties to even (finite inputs only)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError("float32_to_bf16_bits: only finite values are supported")
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_bits_to_float32(b: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values `a` has after being stored as `dtype` and read back."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.copy()
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)  # numpy rounds to nearest, ties to even
    if dtype == "BF16":
        return bf16_bits_to_float32(float32_to_bf16_bits(a))
    raise ValueError(f"round_to_dtype: unsupported dtype {dtype!r}")


def _encode(a: np.ndarray, dtype: str) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "BF16":
        return float32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(f"write_safetensors: unsupported dtype {dtype!r}")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32",
                      metadata: dict[str, str] | None = None) -> None:
    """Writes `tensors` (float32 arrays, in dict order) to `path`, each stored as `dtype`."""
    header: dict[str, object] = {}
    blobs = []
    offset = 0
    for name, array in tensors.items():
        blob = _encode(array, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)  # data area 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """Returns ({name: float32 array}, {name: stored dtype}, metadata) of an F32/F16/BF16 file."""
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length].decode("utf-8"))
    area = memoryview(data)[8 + length:]
    metadata = header.pop("__metadata__", {})
    tensors, dtypes = {}, {}
    for name, entry in header.items():
        dtype, shape = entry["dtype"], tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if dtype not in DTYPE_SIZES or end - begin != count * DTYPE_SIZES[dtype] or end > len(area):
            raise ValueError(f"{path}: tensor {name!r}: bad dtype or offsets")
        raw = area[begin:end]
        if dtype == "F32":
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dtype == "F16":
            values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        else:
            values = bf16_bits_to_float32(np.frombuffer(raw, dtype="<u2"))
        tensors[name] = values.reshape(shape)
        dtypes[name] = dtype
    return tensors, dtypes, metadata
