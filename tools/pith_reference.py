# SPDX-License-Identifier: MIT
"""The PyTorch twin of pith's Llama-family forward pass: the reference the C++ tests compare against.

A plain, readable implementation of the Hugging Face `LlamaForCausalLM` decoder (without the
`transformers` package), computing in the dtype of the weights it is given (float32 for the goldens;
float64 to measure float32's own rounding error). Weights are a dict {Hugging Face name: tensor}:

    model.embed_tokens.weight                       [vocab, hidden]
    model.layers.{i}.input_layernorm.weight         [hidden]
    model.layers.{i}.self_attn.q_proj.weight        [heads * head_dim, hidden]
    model.layers.{i}.self_attn.k_proj.weight        [kv_heads * head_dim, hidden]
    model.layers.{i}.self_attn.v_proj.weight        [kv_heads * head_dim, hidden]
    model.layers.{i}.self_attn.o_proj.weight        [hidden, heads * head_dim]
    model.layers.{i}.post_attention_layernorm.weight [hidden]
    model.layers.{i}.mlp.gate_proj.weight           [intermediate, hidden]
    model.layers.{i}.mlp.up_proj.weight             [intermediate, hidden]
    model.layers.{i}.mlp.down_proj.weight           [hidden, intermediate]
    model.norm.weight                               [hidden]
    lm_head.weight                                  [vocab, hidden]  (absent when tie_word_embeddings)

Linear weights are [out_features, in_features], as in PyTorch: y = x @ W.T.

Configuration
- `LlamaConfig`: the Hugging Face config.json keys pith reads; `from_dict`, `load`, `to_hf_dict`,
  `validate`. `head_dim` defaults to hidden_size / num_attention_heads but may differ (Qwen3, Gemma).
- `checkpoint_tensor_names(config)`: every tensor name in model order with its shape.

Building blocks (x is [seq, hidden]; per-head tensors are [seq, heads, head_dim])
- `rms_norm(x, weight, eps)`: x * rsqrt(mean(x^2 over the last axis) + eps) * weight.
- `rope_cos_sin(positions, head_dim, theta, dtype)`: cos and sin of position * inv_freq[j] with
  inv_freq[j] = theta^(-2j / head_dim), j in [0, head_dim/2); angles computed in float64, then
  rounded to `dtype` (Hugging Face computes them in float32; the difference is below 1e-6 here).
- `apply_rope_half(x, cos, sin)`: Hugging Face layout, rotates the pairs (j, j + head_dim/2):
  x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = cat(-x2, x1).
- `apply_rope_interleaved(x, cos, sin)`: llama2.c / GGUF / Meta layout, rotates the adjacent pairs
  (2j, 2j + 1): out[2j] = x[2j] cos - x[2j+1] sin, out[2j+1] = x[2j] sin + x[2j+1] cos.
- `apply_rope(x, positions, theta, layout)`: one of the two above, layout "half" or "interleaved".
- `attention(q, k, v, q_positions, k_positions)`: causal grouped-query attention; query head h
  reads key/value head h // (heads / kv_heads) (Hugging Face `repeat_kv`); query at position p sees
  the keys whose position is <= p; scores scaled by 1/sqrt(head_dim); softmax in the compute dtype.
- `mlp(x, gate, up, down)`: SwiGLU, down(silu(gate(x)) * up(x)), silu(z) = z * sigmoid(z).
- `decoder_layer(...)`: one pre-norm layer: h += o_proj(attention(rope(q), rope(k), v)) of
  input_layernorm(h); h += mlp(post_attention_layernorm(h)).

The model
- `KVCache`: per layer the rotated keys, the values and their positions (what pith's cache holds).
- `forward(weights, config, ids, rope_layout="half", cache=None, positions=None)`: logits
  [len(ids), vocab] for every given token; with a cache, the tokens attend to the cached states
  and their own keys/values are appended (prefill or decode); positions default to continuing
  the cache (0, 1, 2, ... without one).
- `forward_logits(weights, config, ids, rope_layout)`: logits for every position of a token
  sequence, full causal forward, no cache.
- `decode_incremental(weights, config, ids, rope_layout)`: the same logits computed one token at
  a time through a KVCache (the path an engine takes when generating).
- `argmax_lowest(row)`: index of the largest value, ties going to the lowest index.
- `greedy_decode(weights, config, ids, steps, rope_layout)`: `steps` tokens of greedy decoding
  after the prompt, recomputing the full forward at each step; also returns each step's margin
  (top-1 minus top-2 logit), which says how robust the golden tokens are to rounding.

Layouts and checkpoints
- `permute_half_to_interleaved(w, n_heads)` / `permute_interleaved_to_half(w, n_heads)`: the row
  permutation of a q_proj/k_proj weight that turns a half-layout model into the equivalent
  interleaved-layout model (llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`) and back: within
  each head of head_dim rows, new row 2j + s = old row s * head_dim/2 + j (s in {0, 1}).
- `weights_half_to_interleaved(weights, config)`: a copy of the weights with every q_proj
  (n_heads) and k_proj (kv_heads) permuted so that rope_layout="interleaved" gives the same logits.
- `cast_weights(weights, dtype)`, `weights_from_numpy(arrays)`, `load_checkpoint(folder)` (reads
  config.json + model.safetensors, F32/F16/BF16 upcast to float32).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROPE_LAYOUTS = ("half", "interleaved")


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class LlamaConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 2048

    @staticmethod
    def from_dict(d: dict) -> "LlamaConfig":
        heads = int(d["num_attention_heads"])
        config = LlamaConfig(
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(d.get("head_dim") or d["hidden_size"] // heads),
            vocab_size=int(d["vocab_size"]),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-5)),
            rope_theta=float(d.get("rope_theta", 10000.0)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
        )
        config.validate()
        return config

    @staticmethod
    def load(path: Path) -> "LlamaConfig":
        return LlamaConfig.from_dict(json.loads(Path(path).read_text()))

    def validate(self) -> None:
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "vocab_size"):
            if getattr(self, key) <= 0:
                raise ValueError(f"config: {key} must be positive")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError("config: num_key_value_heads must divide num_attention_heads")
        if self.head_dim % 2 != 0:
            raise ValueError("config: head_dim must be even (RoPE rotates pairs)")

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict:
        """The Hugging Face config.json contents for this model."""
        d = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
        d.update(asdict(self))
        d["torch_dtype"] = torch_dtype
        return d


def checkpoint_tensor_names(config: LlamaConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the checkpoint, in model order."""
    c = config
    q_rows, kv_rows = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    out = [("model.embed_tokens.weight", (c.vocab_size, c.hidden_size))]
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (c.hidden_size,)),
            (p + "self_attn.q_proj.weight", (q_rows, c.hidden_size)),
            (p + "self_attn.k_proj.weight", (kv_rows, c.hidden_size)),
            (p + "self_attn.v_proj.weight", (kv_rows, c.hidden_size)),
            (p + "self_attn.o_proj.weight", (c.hidden_size, q_rows)),
            (p + "post_attention_layernorm.weight", (c.hidden_size,)),
            (p + "mlp.gate_proj.weight", (c.intermediate_size, c.hidden_size)),
            (p + "mlp.up_proj.weight", (c.intermediate_size, c.hidden_size)),
            (p + "mlp.down_proj.weight", (c.hidden_size, c.intermediate_size)),
        ]
    out.append(("model.norm.weight", (c.hidden_size,)))
    if not c.tie_word_embeddings:
        out.append(("lm_head.weight", (c.vocab_size, c.hidden_size)))
    return out


# ----------------------------------------------------------------------------------------------
# Building blocks


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) * weight over the last axis."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of positions[:, None] * inv_freq[None, :], each [seq, head_dim / 2]."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """cat(-x2, x1) where x1, x2 are the two halves of the last axis (Hugging Face)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face layout: rotates pairs (j, j + head_dim/2) of x [seq, heads, head_dim] by angle j."""
    cos = torch.cat((cos, cos), dim=-1)[:, None, :]  # [seq, 1, head_dim]
    sin = torch.cat((sin, sin), dim=-1)[:, None, :]
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """llama2.c / GGUF layout: rotates adjacent pairs (2j, 2j + 1) of x [seq, heads, head_dim]."""
    cos, sin = cos[:, None, :], sin[:, None, :]  # [seq, 1, head_dim / 2]
    even, odd = x[..., 0::2], x[..., 1::2]
    out_even = even * cos - odd * sin
    out_odd = even * sin + odd * cos
    return torch.stack((out_even, out_odd), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float, layout: str = "half") -> torch.Tensor:
    """RoPE on x [seq, heads, head_dim] at the given positions [seq], in the given pair layout."""
    cos, sin = rope_cos_sin(positions, x.shape[-1], theta, x.dtype)
    if layout == "half":
        return apply_rope_half(x, cos, sin)
    if layout == "interleaved":
        return apply_rope_interleaved(x, cos, sin)
    raise ValueError(f"rope layout must be one of {ROPE_LAYOUTS}, not {layout!r}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    """Causal grouped-query attention.

    q [m, heads, d]; k, v [n, kv_heads, d]; positions [m] and [n]. Query head h reads kv head
    h // (heads / kv_heads). Returns [m, heads, d] = softmax(q k^T / sqrt(d), keys with
    position <= the query's) v.
    """
    heads, kv_heads, d = q.shape[1], k.shape[1], q.shape[2]
    group = heads // kv_heads
    k = k.repeat_interleave(group, dim=1)  # [n, heads, d], kv head j serves query heads j*group ...
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("mhd,nhd->hmn", q, k) / math.sqrt(d)  # [heads, m, n]
    visible = k_positions[None, :] <= q_positions[:, None]  # [m, n]
    scores = scores.masked_fill(~visible[None, :, :], float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    return torch.einsum("hmn,nhd->mhd", probabilities, v)


def mlp(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


# ----------------------------------------------------------------------------------------------
# The model


class KVCache:
    """Per layer: rotated keys [n, kv_heads, head_dim], values [n, kv_heads, head_dim], positions [n]."""

    def __init__(self, config: LlamaConfig, dtype: torch.dtype = torch.float32):
        c = config
        empty = lambda: torch.zeros((0, c.num_key_value_heads, c.head_dim), dtype=dtype)
        self.keys = [empty() for _ in range(c.num_hidden_layers)]
        self.values = [empty() for _ in range(c.num_hidden_layers)]
        self.positions = [torch.zeros((0,), dtype=torch.int64) for _ in range(c.num_hidden_layers)]

    def next_position(self) -> int:
        return int(self.positions[0].max()) + 1 if len(self.positions[0]) else 0

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor):
        self.keys[layer] = torch.cat((self.keys[layer], keys))
        self.values[layer] = torch.cat((self.values[layer], values))
        self.positions[layer] = torch.cat((self.positions[layer], positions))


def decoder_layer(weights: dict[str, torch.Tensor], config: LlamaConfig, layer: int, h: torch.Tensor,
                  positions: torch.Tensor, cache: KVCache | None, rope_layout: str) -> torch.Tensor:
    """One pre-norm Llama layer on the residual stream h [seq, hidden]; returns the new h."""
    c, p = config, f"model.layers.{layer}."
    w = lambda name: weights[p + name]
    seq = h.shape[0]

    x = rms_norm(h, w("input_layernorm.weight"), c.rms_norm_eps)
    q = (x @ w("self_attn.q_proj.weight").T).view(seq, c.num_attention_heads, c.head_dim)
    k = (x @ w("self_attn.k_proj.weight").T).view(seq, c.num_key_value_heads, c.head_dim)
    v = (x @ w("self_attn.v_proj.weight").T).view(seq, c.num_key_value_heads, c.head_dim)
    q = apply_rope(q, positions, c.rope_theta, rope_layout)
    k = apply_rope(k, positions, c.rope_theta, rope_layout)
    k_positions = positions
    if cache is not None:
        cache.append(layer, k, v, positions)
        k, v, k_positions = cache.keys[layer], cache.values[layer], cache.positions[layer]
    out = attention(q, k, v, positions, k_positions).reshape(seq, c.num_attention_heads * c.head_dim)
    h = h + out @ w("self_attn.o_proj.weight").T

    x = rms_norm(h, w("post_attention_layernorm.weight"), c.rms_norm_eps)
    h = h + mlp(x, w("mlp.gate_proj.weight"), w("mlp.up_proj.weight"), w("mlp.down_proj.weight"))
    return h


def forward(weights: dict[str, torch.Tensor], config: LlamaConfig, ids, rope_layout: str = "half",
            cache: KVCache | None = None, positions=None) -> torch.Tensor:
    """Logits [len(ids), vocab] for the tokens `ids`, attending to `cache` (updated) if given."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    if positions is None:
        start = cache.next_position() if cache is not None else 0
        positions = torch.arange(start, start + len(ids), dtype=torch.int64)
    positions = torch.as_tensor(positions, dtype=torch.int64)

    h = weights["model.embed_tokens.weight"][ids]  # [seq, hidden]
    for layer in range(config.num_hidden_layers):
        h = decoder_layer(weights, config, layer, h, positions, cache, rope_layout)
    h = rms_norm(h, weights["model.norm.weight"], config.rms_norm_eps)
    head = weights["model.embed_tokens.weight"] if config.tie_word_embeddings else weights["lm_head.weight"]
    return h @ head.T


def forward_logits(weights: dict[str, torch.Tensor], config: LlamaConfig, ids,
                   rope_layout: str = "half") -> torch.Tensor:
    """Logits [len(ids), vocab] at every position of `ids` (one causal forward, no cache)."""
    return forward(weights, config, ids, rope_layout)


def decode_incremental(weights: dict[str, torch.Tensor], config: LlamaConfig, ids,
                       rope_layout: str = "half") -> torch.Tensor:
    """The same logits as forward_logits, one token at a time through a KV cache."""
    dtype = weights["model.embed_tokens.weight"].dtype
    cache = KVCache(config, dtype)
    rows = [forward(weights, config, [token], rope_layout, cache)[0] for token in ids]
    return torch.stack(rows)


def argmax_lowest(row: torch.Tensor) -> int:
    """Index of the maximum of a 1-D tensor; ties go to the lowest index."""
    return int(torch.nonzero(row == row.max())[0, 0])


def greedy_decode(weights: dict[str, torch.Tensor], config: LlamaConfig, ids, steps: int,
                  rope_layout: str = "half") -> tuple[list[int], list[float]]:
    """`steps` greedy tokens continuing `ids` (full forward each step) and each step's top-2 margin."""
    tokens = list(ids)
    out, margins = [], []
    for _ in range(steps):
        row = forward_logits(weights, config, tokens, rope_layout)[-1]
        token = argmax_lowest(row)
        top2 = torch.topk(row.to(torch.float64), 2).values
        out.append(token)
        margins.append(float(top2[0] - top2[1]))
        tokens.append(token)
    return out, margins


# ----------------------------------------------------------------------------------------------
# Layouts and checkpoints


def permute_half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection [n_heads * head_dim, in]: new[2j + s] = old[s * head_dim/2 + j] per head.

    This is llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute` (there called with n_head_kv for
    k_proj): w.reshape(n_heads, 2, head_dim // 2, in).swapaxes(1, 2).reshape(w.shape).
    """
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of permute_half_to_interleaved: new[s * head_dim/2 + j] = old[2j + s] per head."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def weights_half_to_interleaved(weights: dict[str, torch.Tensor], config: LlamaConfig) -> dict[str, torch.Tensor]:
    """Weights for rope_layout="interleaved" computing the same function as `weights` with "half"."""
    out = dict(weights)
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}.self_attn."
        out[p + "q_proj.weight"] = permute_half_to_interleaved(weights[p + "q_proj.weight"], config.num_attention_heads)
        out[p + "k_proj.weight"] = permute_half_to_interleaved(weights[p + "k_proj.weight"], config.num_key_value_heads)
    return out


def cast_weights(weights: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {name: tensor.to(dtype) for name, tensor in weights.items()}


def weights_from_numpy(arrays: dict) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array.copy()) for name, array in arrays.items()}


def load_checkpoint(folder: Path) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """config.json + model.safetensors of `folder`, tensors upcast to float32, shapes checked."""
    from safetensors_io import read_safetensors  # tools/ is on sys.path when run from there

    folder = Path(folder)
    config = LlamaConfig.load(folder / "config.json")
    arrays, _, _ = read_safetensors(folder / "model.safetensors")
    weights = weights_from_numpy(arrays)
    expected = dict(checkpoint_tensor_names(config))
    if set(weights) != set(expected):
        raise ValueError(f"{folder}: tensor names differ from the config's: "
                         f"missing {sorted(set(expected) - set(weights))}, extra {sorted(set(weights) - set(expected))}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{folder}: {name} has shape {tuple(weights[name].shape)}, expected {shape}")
    return config, weights
