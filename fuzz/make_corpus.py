#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpora of pith's fuzz targets (fuzz/corpus/<target>/) from small synthetic files and from
# minimised copies of the real model files under ../shared/models (skipped with a note when absent).
#
#   python3 fuzz/make_corpus.py [--models DIR]
#
# Seeds are small (a few KB each): libFuzzer mutates them, so they only need to reach every branch of
# the readers. The tokenizer target reads one selector byte first (0: llama2.c tokenizer.bin,
# preceded by a uint16 vocab_size; 1: GGUF vocabulary; 2: pith JSON word vocabulary; 3: a Hugging
# Face tokenizer.json, read by the BPE tokenizer), see
# fuzz_tokenizer.cpp. The model target reads one selector byte first too (0: GGUF; 1: a uint16
# length, config.json, then model.safetensors; 2: llama2.c), see fuzz_model.cpp.
#
# Files named crash_* in the corpora are inputs that once crashed a reader or the model loader (kept by
# hand as regression seeds; this script leaves them alone).
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# ---- GGUF -----------------------------------------------------------------------------------------

GGUF_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0, GGML_I8, GGML_BF16 = 0, 1, 2, 8, 24, 30


class gguf_array:
    def __init__(self, element_type, values):
        self.element_type = element_type
        self.values = list(values)


def gguf_encode_value(value_type, value):
    if value_type == STRING:
        data = value if isinstance(value, bytes) else value.encode()
        return struct.pack("<Q", len(data)) + data
    if value_type == ARRAY:
        out = struct.pack("<IQ", value.element_type, len(value.values))
        return out + b"".join(gguf_encode_value(value.element_type, v) for v in value.values)
    return struct.pack("<" + GGUF_SCALAR[value_type], value)


def gguf_write(metadata, tensors, alignment=32):
    """metadata: [(key, type, value)]; tensors: [(name, ne, ggml_type, data bytes)]."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value_type, value in metadata:
        out += gguf_encode_value(STRING, key) + struct.pack("<I", value_type) + gguf_encode_value(value_type, value)
    offset = 0
    for name, ne, ggml_type, data in tensors:
        out += gguf_encode_value(STRING, name) + struct.pack("<I", len(ne))
        out += b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", ggml_type, offset)
        offset += (len(data) + alignment - 1) // alignment * alignment
    out += bytes(-len(out) % alignment)
    for _, _, _, data in tensors:
        out += data + bytes(-len(data) % alignment)
    return bytes(out)


def gguf_read(path):
    """Returns (metadata [(key, type, value)], tensor infos [(name, ne, type, offset)], data offset, bytes)."""
    data = open(path, "rb").read()
    position = 8
    if data[:4] != b"GGUF" or struct.unpack_from("<I", data, 4)[0] != 3:
        raise ValueError(path + ": not a GGUF v3 file")

    def take(fmt):
        nonlocal position
        value = struct.unpack_from("<" + fmt, data, position)[0]
        position += struct.calcsize(fmt)
        return value

    def take_value(value_type):
        nonlocal position
        if value_type == STRING:
            length = take("Q")
            position += length
            return data[position - length:position]
        if value_type == ARRAY:
            element_type = take("I")
            return gguf_array(element_type, [take_value(element_type) for _ in range(take("Q"))])
        return take(GGUF_SCALAR[value_type])

    tensor_count, kv_count = take("Q"), take("Q")
    metadata = []
    for _ in range(kv_count):
        key = take_value(STRING)
        value_type = take("I")
        metadata.append((key, value_type, take_value(value_type)))
    infos = []
    for _ in range(tensor_count):
        name = take_value(STRING)
        ne = [take("Q") for _ in range(take("I"))]
        infos.append((name, ne, take("I"), take("Q")))
    alignment = 32
    for key, value_type, value in metadata:
        if key == b"general.alignment":
            alignment = value
    return metadata, infos, (position + alignment - 1) // alignment * alignment, data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def f16(values):
    return struct.pack("<%de" % len(values), *values)


def bf16(values):
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", v))[0])[2:] for v in values)


def ramp(count, scale=0.01):
    return [((i * 37) % 23 - 11) * scale for i in range(count)]


TINY_PIECES = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x20>", "<0xC3>", "<0xA9>", "\u2581", "\u2581t", "he",
               "\u2581the", "a", "t", "h", "e", "\u2581a"]


def tiny_vocab_metadata(pieces=TINY_PIECES):
    types = [2, 3, 3] + [6 if p.startswith("<0x") else 1 for p in pieces[3:]]
    return [
        ("tokenizer.ggml.model", STRING, "llama"),
        ("tokenizer.ggml.tokens", ARRAY, gguf_array(STRING, pieces)),
        ("tokenizer.ggml.scores", ARRAY, gguf_array(FLOAT32, [-float(i) for i in range(len(pieces))])),
        ("tokenizer.ggml.token_type", ARRAY, gguf_array(INT32, types)),
        ("tokenizer.ggml.bos_token_id", UINT32, 1),
        ("tokenizer.ggml.eos_token_id", UINT32, 2),
        ("tokenizer.ggml.unknown_token_id", UINT32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.ggml.add_space_prefix", BOOL, True),
    ]


def tiny_llama_gguf():
    """A complete llama model (hidden 8, 1 layer, 2 heads, 1 KV head, FFN 16, vocab 16) that load_model accepts."""
    h, f, v, kv = 8, 16, len(TINY_PIECES), 4
    metadata = [
        ("general.architecture", STRING, "llama"),
        ("general.name", STRING, "pith-fuzz-tiny"),
        ("llama.context_length", UINT32, 16),
        ("llama.embedding_length", UINT32, h),
        ("llama.feed_forward_length", UINT32, f),
        ("llama.block_count", UINT32, 1),
        ("llama.attention.head_count", UINT32, 2),
        ("llama.attention.head_count_kv", UINT32, 1),
        ("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
        ("llama.rope.freq_base", FLOAT32, 10000.0),
    ] + tiny_vocab_metadata()
    tensors = [
        ("token_embd.weight", [h, v], GGML_F16, f16(ramp(h * v))),
        ("blk.0.attn_norm.weight", [h], GGML_F32, f32([1.0] * h)),
        ("blk.0.attn_q.weight", [h, h], GGML_F32, f32(ramp(h * h))),
        ("blk.0.attn_k.weight", [h, kv], GGML_F32, f32(ramp(h * kv))),
        ("blk.0.attn_v.weight", [h, kv], GGML_BF16, bf16(ramp(h * kv))),
        ("blk.0.attn_output.weight", [h, h], GGML_F32, f32(ramp(h * h))),
        ("blk.0.ffn_norm.weight", [h], GGML_F32, f32([1.0] * h)),
        ("blk.0.ffn_gate.weight", [h, f], GGML_F32, f32(ramp(h * f))),
        ("blk.0.ffn_up.weight", [h, f], GGML_F16, f16(ramp(h * f))),
        ("blk.0.ffn_down.weight", [f, h], GGML_F32, f32(ramp(f * h))),
        ("output_norm.weight", [h], GGML_F32, f32([1.0] * h)),
        ("output.weight", [h, v], GGML_F32, f32(ramp(h * v))),
    ]
    return gguf_write(metadata, tensors)


# Block-quantized types (note §1): name -> (ggml id, block elements, block bytes, offsets of the f16 scales).
GGML_BLOCKS = {
    "Q4_0": (2, 32, 18, [0]), "Q4_1": (3, 32, 20, [0, 2]), "Q5_0": (6, 32, 22, [0]), "Q5_1": (7, 32, 24, [0, 2]),
    "Q8_0": (8, 32, 34, [0]), "Q2_K": (10, 256, 84, [80, 82]), "Q3_K": (11, 256, 110, [108]),
    "Q4_K": (12, 256, 144, [0, 2]), "Q5_K": (13, 256, 176, [0, 2]), "Q6_K": (14, 256, 210, [208]),
    "IQ4_NL": (20, 32, 18, [0]), "IQ4_XS": (23, 256, 136, [0]),
}
GGML_IQ2_XS, GGML_Q8_K = 17, 15


def quant_blocks(type_name, count, seed, scale=0.01):
    """`count` blocks of pseudo-random bytes whose f16 scales are `scale` (dequantize to finite values)."""
    _, _, size, scales = GGML_BLOCKS[type_name]
    state = seed * 2654435761 % (1 << 32) or 1
    out = bytearray()
    for _ in range(count):
        block = bytearray()
        for _ in range(size):
            state = (state * 1103515245 + 12345) % (1 << 31)
            block.append(state >> 16 & 0xFF)
        for at in scales:
            block[at:at + 2] = struct.pack("<e", scale)
        out += block
    return bytes(out)


def q8_0(values):
    """The reference Q8_0 quantizer (note §4.2) in pure Python: d = amax / 127, q = roundf(x / d)."""
    out = bytearray()
    for b in range(0, len(values), 32):
        block = values[b:b + 32]
        d = struct.unpack("<f", struct.pack("<f", max(abs(v) for v in block) / 127.0))[0]
        inv = 1.0 / d if d else 0.0
        out += struct.pack("<e", d)
        for v in block:
            q = v * inv
            out += struct.pack("<b", int(q + 0.5) if q >= 0 else -int(-q + 0.5))
    return bytes(out)


def quantized_types_gguf():
    """One [block, 2] tensor of every block-quantized type pith reads, plus a 1-D one."""
    tensors = []
    for i, (name, (ggml_id, elements, _, _)) in enumerate(GGML_BLOCKS.items()):
        tensors.append((name.lower() + ".weight", [elements, 2], ggml_id, quant_blocks(name, 2, i + 1)))
    tensors.append(("q8_0_vector", [64], GGML_Q8_0, q8_0(ramp(64, 0.1))))
    return gguf_write([("general.architecture", STRING, "llama")], tensors)


def quantized_edge_ggufs():
    """Files the reader must refuse: rows that are not whole blocks, a tensor cut short, types pith lacks."""
    partial = gguf_write([], [("w", [48, 2], GGML_Q8_0, quant_blocks("Q8_0", 3, 5))])
    truncated = gguf_write([], [("w", [256, 2], GGML_BLOCKS["Q4_K"][0], quant_blocks("Q4_K", 2, 7))])[:-100]
    iq2 = gguf_write([], [("w", [256, 1], GGML_IQ2_XS, bytes(74))])
    q8k = gguf_write([], [("w", [256, 1], GGML_Q8_K, bytes(292))])
    return {"quantized_partial_block.gguf": partial, "quantized_truncated.gguf": truncated,
            "quantized_iq2_xs.gguf": iq2, "quantized_q8_k.gguf": q8k}


def tiny_quantized_llama_gguf():
    """A llama model with rows of 32 (hidden 32, 2 heads of 16, 1 KV head, FFN 64, vocab 16) in several
    block types: Q8_0 from the reference quantizer, the others pseudo-random blocks with small scales."""
    h, f, v, kv = 32, 64, len(TINY_PIECES), 16
    metadata = [
        ("general.architecture", STRING, "llama"),
        ("llama.context_length", UINT32, 16),
        ("llama.embedding_length", UINT32, h),
        ("llama.feed_forward_length", UINT32, f),
        ("llama.block_count", UINT32, 1),
        ("llama.attention.head_count", UINT32, 2),
        ("llama.attention.head_count_kv", UINT32, 1),
        ("llama.attention.layer_norm_rms_epsilon", FLOAT32, 1e-5),
    ] + tiny_vocab_metadata()
    blocks = lambda name, rows, cols, seed: quant_blocks(name, rows * cols // 32, seed)
    tensors = [
        ("token_embd.weight", [h, v], GGML_Q8_0, q8_0(ramp(h * v))),
        ("blk.0.attn_norm.weight", [h], GGML_F32, f32([1.0] * h)),
        ("blk.0.attn_q.weight", [h, h], GGML_BLOCKS["Q4_0"][0], blocks("Q4_0", h, h, 1)),
        ("blk.0.attn_k.weight", [h, kv], GGML_BLOCKS["Q5_1"][0], blocks("Q5_1", kv, h, 2)),
        ("blk.0.attn_v.weight", [h, kv], GGML_BLOCKS["IQ4_NL"][0], blocks("IQ4_NL", kv, h, 3)),
        ("blk.0.attn_output.weight", [h, h], GGML_Q8_0, q8_0(ramp(h * h))),
        ("blk.0.ffn_norm.weight", [h], GGML_F32, f32([1.0] * h)),
        ("blk.0.ffn_gate.weight", [h, f], GGML_BLOCKS["Q4_1"][0], blocks("Q4_1", f, h, 4)),
        ("blk.0.ffn_up.weight", [h, f], GGML_BLOCKS["Q5_0"][0], blocks("Q5_0", f, h, 5)),
        ("blk.0.ffn_down.weight", [f, h], GGML_Q8_0, q8_0(ramp(f * h))),
        ("output_norm.weight", [h], GGML_F32, f32([1.0] * h)),
    ]
    return gguf_write(metadata, tensors)


def every_type_gguf():
    """Every metadata value type and array element type, alignment 64, and tensors of several ggml types."""
    metadata = [
        ("general.alignment", UINT32, 64),
        ("u8", UINT8, 200), ("i8", INT8, -100), ("u16", UINT16, 60000), ("i16", INT16, -30000),
        ("u32", UINT32, 4000000000), ("i32", INT32, -2000000000), ("f32", FLOAT32, 1.5), ("bool", BOOL, True),
        ("string", STRING, "h\u00e9llo"), ("u64", UINT64, 2**63 + 1), ("i64", INT64, -2**62), ("f64", FLOAT64, -2.25),
        ("a.u8", ARRAY, gguf_array(UINT8, [1, 2, 3])), ("a.i8", ARRAY, gguf_array(INT8, [-1, 2])),
        ("a.u16", ARRAY, gguf_array(UINT16, [7])), ("a.i16", ARRAY, gguf_array(INT16, [-7, 7])),
        ("a.u32", ARRAY, gguf_array(UINT32, [9, 10])), ("a.i32", ARRAY, gguf_array(INT32, [-9])),
        ("a.f32", ARRAY, gguf_array(FLOAT32, [0.5, -0.5])), ("a.bool", ARRAY, gguf_array(BOOL, [True, False])),
        ("a.string", ARRAY, gguf_array(STRING, ["x", "", "yz"])), ("a.u64", ARRAY, gguf_array(UINT64, [])),
        ("a.i64", ARRAY, gguf_array(INT64, [-3])), ("a.f64", ARRAY, gguf_array(FLOAT64, [1e300])),
    ]
    q4_0 = f16([0.5]) + bytes(range(16))  # one block: scale + 32 nibbles
    q8_0 = (f16([0.25]) + bytes(range(32))) * 2
    tensors = [
        ("scalar", [], GGML_F32, f32([3.0])),
        ("f16", [3, 2], GGML_F16, f16(ramp(6))),
        ("bf16", [4], GGML_BF16, bf16(ramp(4))),
        ("empty", [0, 3], GGML_F32, b""),
        ("q4_0", [32], GGML_Q4_0, q4_0),
        ("q8_0", [32, 2], GGML_Q8_0, q8_0),
        ("i8", [5], GGML_I8, bytes([1, 2, 3, 4, 5])),
        ("f32.4d", [2, 1, 2, 1], GGML_F32, f32(ramp(4))),
    ]
    return gguf_write(metadata, tensors, alignment=64)


def stories_header_gguf(path):
    """stories260K.gguf with every metadata key (its 512-token vocabulary) and only its two norm tensors of layer 0."""
    metadata, infos, data_offset, data = gguf_read(path)
    keep = [b"blk.0.attn_norm.weight", b"output_norm.weight"]
    tensors = []
    for name, ne, ggml_type, offset in infos:
        if name in keep:
            size = 4
            for n in ne:
                size *= n
            tensors.append((name, ne, ggml_type, data[data_offset + offset:data_offset + offset + size]))
    return gguf_write(metadata, tensors)


def trimmed_vocab_gguf(path, keep):
    """A GGUF vocabulary file with its token arrays cut to the first `keep` entries (no tensors)."""
    metadata, _, _, _ = gguf_read(path)
    out = []
    for key, value_type, value in metadata:
        if value_type == ARRAY and key.startswith(b"tokenizer.ggml.") and len(value.values) > keep:
            value = gguf_array(value.element_type, value.values[:keep])
        if key == b"llama.vocab_size":
            value = keep
        out.append((key, value_type, value))
    return gguf_write(out, [])


# ---- safetensors ----------------------------------------------------------------------------------

def safetensors_write(tensors, metadata=None):
    """tensors: [(name, dtype, shape, data bytes)], stored in the given order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def safetensors_minimised(path, keep):
    """A real safetensors file reduced to the tensors named in `keep`, with its header's dtypes and metadata."""
    data = open(path, "rb").read()
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + length])
    start = 8 + length
    tensors = []
    for name in keep:
        entry = header[name]
        begin, end = entry["data_offsets"]
        tensors.append((name, entry["dtype"], entry["shape"], data[start + begin:start + end]))
    return safetensors_write(tensors, header.get("__metadata__"))


# ---- whole models (fuzz_model: selector byte 0 GGUF, 1 config.json + safetensors, 2 llama2.c) -------

def tiny_block_gguf():
    """tiny_llama_gguf with block attention residuals (block size 1): the attn_res/ffn_res/output_res scores."""
    data = tiny_llama_gguf()
    metadata, infos, data_offset, raw = gguf_read_bytes(data)
    h = 8
    tensors = []
    for name, ne, ggml_type, offset in infos:
        size = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}[ggml_type]
        for n in ne:
            size *= n
        tensors.append((name, ne, ggml_type, raw[data_offset + offset:data_offset + offset + size]))
    tensors += [("blk.0.ffn_res_score.weight", [h], GGML_F32, f32(ramp(h, 0.1))),
                ("output_res_score.weight", [h], GGML_F32, f32(ramp(h, 0.2)))]
    metadata.append((b"llama.attn_res_block_size", UINT32, 1))
    return gguf_write(metadata, tensors)


def gguf_read_bytes(data):
    """gguf_read on bytes instead of a path."""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
        tmp.write(data)
        tmp.flush()
        return gguf_read(tmp.name)


def tiny_hf_model(layers, mixers=None, residual=None, block_size=None, tied=True, h=8, f=16, heads=2, kv_heads=1,
                  vocab=16, mixer_intermediate=12, fixed_length=8, context=16):
    """A fuzz_model input: config.json and a safetensors checkpoint of a tiny Hugging Face layout model."""
    d = h // heads
    q, kv = heads * d, kv_heads * d
    config = {"hidden_size": h, "intermediate_size": f, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "max_position_embeddings": context, "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2}
    if mixers:
        config["token_mixers"] = mixers
        config["mixer_mlp_intermediate_size"] = mixer_intermediate
    if residual:
        config["attn_res_mode"] = residual
    if block_size:
        config["attn_res_block_size"] = block_size
    tensors = [("model.embed_tokens.weight", [vocab, h])]
    for i in range(layers):
        mixer = mixers[i] if mixers else "standard"
        prefix = "model.layers.%d." % i
        tensors.append((prefix + "input_layernorm.weight", [h]))
        if mixer != "mlp":
            if mixer not in ("rnd_emb_qk", "fixed_seq_qk"):
                tensors += [(prefix + "self_attn.q_proj.weight", [q, h]), (prefix + "self_attn.k_proj.weight", [kv, h])]
            tensors += [(prefix + "self_attn.v_proj.weight", [kv, h]), (prefix + "self_attn.o_proj.weight", [h, q])]
        if mixer in ("rnd_emb_qk", "fixed_seq_qk"):
            tensors += [(prefix + "self_attn.fixed_q", [fixed_length, q]), (prefix + "self_attn.fixed_k", [fixed_length, kv])]
        if mixer == "mlp":
            m = mixer_intermediate
            tensors += [(prefix + "mixer_mlp.gate_proj.weight", [m, h]), (prefix + "mixer_mlp.up_proj.weight", [m, h]),
                        (prefix + "mixer_mlp.down_proj.weight", [h, m])]
        tensors += [(prefix + "post_attention_layernorm.weight", [h]), (prefix + "mlp.gate_proj.weight", [f, h]),
                    (prefix + "mlp.up_proj.weight", [f, h]), (prefix + "mlp.down_proj.weight", [h, f])]
        if residual in ("block", "full"):
            tensors += [(prefix + "self_attention_res_norm.weight", [h]), (prefix + "self_attention_res_proj.weight", [1, h]),
                        (prefix + "mlp_res_norm.weight", [h]), (prefix + "mlp_res_proj.weight", [1, h])]
    if residual in ("block", "full"):
        tensors += [("model.output_attn_res_norm.weight", [h]), ("model.output_attn_res_proj.weight", [1, h])]
    tensors.append(("model.norm.weight", [h]))
    if not tied:
        tensors.append(("lm_head.weight", [vocab, h]))
    encoded = []
    for name, shape in tensors:
        count = 1
        for n in shape:
            count *= n
        values = [1.0] * count if name.endswith("norm.weight") else ramp(count, 0.05)
        encoded.append((name, "F32", shape, f32(values)))
    text = json.dumps(config, separators=(",", ":")).encode()
    return b"\x01" + struct.pack("<H", len(text)) + text + safetensors_write(encoded)


# ---- llama2.c -------------------------------------------------------------------------------------

def llama2c_checkpoint(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared):
    kv_dim = dim // heads * kv_heads
    half_head = dim // heads // 2
    sizes = [vocab * dim, layers * dim, layers * dim * dim, layers * kv_dim * dim, layers * kv_dim * dim,
             layers * dim * dim, layers * dim, layers * hidden * dim, layers * dim * hidden, layers * hidden * dim,
             dim, seq_len * half_head, seq_len * half_head]
    if not shared:
        sizes.append(vocab * dim)
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    return header + f32(ramp(sum(sizes)))


def llama2c_tokenizer(pieces, scores=None):
    encoded = [p.encode() if isinstance(p, str) else p for p in pieces]
    scores = scores or [-float(i) for i in range(len(pieces))]
    out = struct.pack("<i", max(len(p) for p in encoded))
    for piece, score in zip(encoded, scores):
        out += struct.pack("<fi", score, len(piece)) + piece
    return out


# ---- main -----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=os.path.join(HERE, "..", "..", "shared", "models"),
                        help="folder of the shared model files (default: ../shared/models next to the repository)")
    models = parser.parse_args().models

    seeds = {}

    def add(target, name, data):
        seeds[(target, name)] = data

    def model(relative):
        path = os.path.join(models, relative)
        if not os.path.exists(path):
            print("make_corpus.py: %s not found, seed skipped" % path, file=sys.stderr)
            return None
        return path

    # safetensors
    add("fuzz_safetensors", "two_f32.safetensors",
        safetensors_write([("a", "F32", [2, 3], f32(ramp(6))), ("b", "F32", [4], f32(ramp(4)))]))
    add("fuzz_safetensors", "dtypes_metadata.safetensors",
        safetensors_write([("bf16", "BF16", [2, 2], bf16(ramp(4))), ("f16", "F16", [3], f16(ramp(3))),
                           ("i64", "I64", [2], struct.pack("<2q", -1, 7)), ("scalar", "F32", [], f32([2.0])),
                           ("empty", "F32", [0, 5], b""), ("u8", "U8", [3], b"\x01\x02\x03")],
                          {"format": "pt", "note": "h\u00e9llo"}))
    for name in ["f16", "bf16"]:
        path = os.path.join(HERE, "..", "tests", "data", "llama", name, "model.safetensors")
        if os.path.exists(path):
            add("fuzz_safetensors", "llama_%s_norms.safetensors" % name,
                safetensors_minimised(path, ["model.norm.weight", "model.layers.0.input_layernorm.weight"]))

    # GGUF
    add("fuzz_gguf", "tiny_llama.gguf", tiny_llama_gguf())
    add("fuzz_gguf", "every_type.gguf", every_type_gguf())
    add("fuzz_gguf", "quantized_types.gguf", quantized_types_gguf())
    for name, data in quantized_edge_ggufs().items():
        add("fuzz_gguf", name, data)
    stories = model("stories260K/stories260K.gguf")
    if stories:
        add("fuzz_gguf", "stories260K_header.gguf", stories_header_gguf(stories))

    # llama2.c checkpoints
    add("fuzz_llama2c", "tiny_shared.bin", llama2c_checkpoint(8, 16, 1, 2, 1, 8, 4, shared=True))
    add("fuzz_llama2c", "tiny_separate_classifier.bin", llama2c_checkpoint(8, 12, 2, 2, 2, 6, 2, shared=False))
    add("fuzz_llama2c", "header_only_export_v1.bin", struct.pack("<I6i", 0x616B3432, 1, 8, 16, 1, 2, 1))

    # whole models, loaded and run (selector byte: 0 GGUF, 1 config.json + safetensors, 2 llama2.c)
    add("fuzz_model", "gguf_tiny_llama", b"\x00" + tiny_llama_gguf())
    add("fuzz_model", "gguf_tiny_block", b"\x00" + tiny_block_gguf())
    add("fuzz_model", "gguf_tiny_quantized", b"\x00" + tiny_quantized_llama_gguf())
    add("fuzz_model", "st_standard_tied", tiny_hf_model(2))
    add("fuzz_model", "st_standard_untied", tiny_hf_model(1, tied=False))
    add("fuzz_model", "st_block", tiny_hf_model(3, residual="block", block_size=2))
    add("fuzz_model", "st_full", tiny_hf_model(2, residual="full"))
    add("fuzz_model", "st_hybrid", tiny_hf_model(4, mixers=["standard", "mlp", "approximate", "non_approximate"]))
    add("fuzz_model", "st_fixed_streams", tiny_hf_model(3, mixers=["rnd_emb_qk", "fixed_seq_qk", "static_emb_qk"]))
    add("fuzz_model", "llama2c_tiny", b"\x02" + llama2c_checkpoint(8, 16, 1, 2, 1, 8, 4, shared=True))

    # tokenizers: selector byte, then the file (llama2.c: uint16 vocab_size first)
    tiny_pieces = ["<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", "<0x20>", "<0xC3>", "<0xA9>", " t", "he", " the",
                   "a", "t", "h", "e", " ", " a"]
    add("fuzz_tokenizer", "llama2c_tiny.tok", b"\x00" + struct.pack("<H", len(tiny_pieces)) + llama2c_tokenizer(tiny_pieces))
    tok512 = model("stories260K/tok512.bin")
    if tok512:
        add("fuzz_tokenizer", "llama2c_tok512.tok", b"\x00" + struct.pack("<H", 512) + open(tok512, "rb").read())
    add("fuzz_tokenizer", "gguf_tiny.tok", b"\x01" + gguf_write(tiny_vocab_metadata(), []))
    spm = model("ggml-vocab/ggml-vocab-llama-spm.gguf")
    if spm:
        add("fuzz_tokenizer", "gguf_llama_spm_300.tok", b"\x01" + trimmed_vocab_gguf(spm, 300))
    words = {"type": "pith-words", "tokens": ["<unk>", "<s>", "</s>", "the", "cat", "sat", "on", "mat", ".", ",",
                                              "a", "dog", "'", "s", "(", ")", "!", "don", "t", "caf\u00e9"],
             "unk": 0, "bos": 1, "eos": 2, "lowercase": True}
    add("fuzz_tokenizer", "words.tok", b"\x02" + json.dumps(words, ensure_ascii=False).encode())
    chars = {"type": "pith-chars", "tokens": ["<unk>", "<s>", "</s>", " ", "a", "b", "c", ".", "\u00e9", "\u65e5"],
             "unk": 0, "bos": 1, "eos": 2}
    add("fuzz_tokenizer", "chars.tok", b"\x02" + json.dumps(chars, ensure_ascii=False).encode())
    # A byte-level BPE tokenizer.json: bytes as GPT-2's characters, three merges, an added token, NFC, a Split regex.
    alphabet = [b for b in range(0x21, 0x7f)] + [b for b in range(0xa1, 0xad)] + [b for b in range(0xae, 0x100)]
    byte_chars, extra = {}, 0
    for b in range(256):
        byte_chars[b] = chr(b) if b in alphabet else chr(0x100 + extra)
        extra += b not in alphabet
    bpe_vocab = {byte_chars[b]: b for b in range(256)}
    bpe_vocab.update({"th": 256, "the": 257, "\u0120the": 258})
    bpe = {"model": {"type": "BPE", "vocab": bpe_vocab, "merges": ["t h", "th e", "\u0120 the"], "ignore_merges": True},
           "added_tokens": [{"id": 259, "content": "<|eot|>", "special": True, "lstrip": False, "rstrip": True}],
           "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
                "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
           "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|eot|>", "type_id": 0}},
                                                                     {"Sequence": {"id": "A", "type_id": 0}}],
                              "special_tokens": {"<|eot|>": {"id": "<|eot|>", "ids": [259], "tokens": ["<|eot|>"]}}},
           "decoder": {"type": "ByteLevel"}}
    add("fuzz_tokenizer", "bpe_tiny.tok", b"\x03" + json.dumps(bpe, ensure_ascii=False).encode())

    for (target, name), data in sorted(seeds.items()):
        folder = os.path.join(CORPUS, target)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as out:
            out.write(data)
        print("%-16s %-34s %6d bytes" % (target, name, len(data)))
    print("total %d bytes" % sum(len(d) for d in seeds.values()))


if __name__ == "__main__":
    main()
