# SPDX-License-Identifier: MIT
"""The PyTorch twin of pith's Llama-family forward pass: the reference the C++ tests compare against.

A plain, readable implementation of the Hugging Face `LlamaForCausalLM` decoder (without the
`transformers` package), computing in the dtype of the weights it is given (float32 for the goldens;
float64 to measure float32's own rounding error), extended with pith's attention residuals and
token mixers exactly as docs/layers.md specifies them. Weights are a dict {Hugging Face name: tensor}:

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

plus, depending on the layer's token mixer and the residual mode (docs/layers.md):

    model.layers.{i}.mixer_mlp.{gate,up}_proj.weight [m, hidden]  (mixer "mlp", instead of q/k/v/o)
    model.layers.{i}.mixer_mlp.down_proj.weight     [hidden, m]
    model.layers.{i}.self_attn.fixed_q              [L_max, heads * head_dim]     (rnd_emb_qk, fixed_seq_qk)
    model.layers.{i}.self_attn.fixed_k              [L_max, kv_heads * head_dim]
    model.layers.{i}.self_attention_res_norm.weight [hidden]   (attn_res_mode block or full)
    model.layers.{i}.self_attention_res_proj.weight [1, hidden]
    model.layers.{i}.mlp_res_norm.weight            [hidden]
    model.layers.{i}.mlp_res_proj.weight            [1, hidden]
    model.output_attn_res_norm.weight               [hidden]
    model.output_attn_res_proj.weight               [1, hidden]

Linear weights are [out_features, in_features], as in PyTorch: y = x @ W.T.

Families (notes/model_families.md; `LlamaConfig.family` from architectures[0]: llama, mistral, qwen2,
qwen3, gemma3) add, per layer:

    model.layers.{i}.self_attn.{q,k,v}_proj.bias    [heads * head_dim] / [kv_heads * head_dim]  (qwen2)
    model.layers.{i}.self_attn.{q,k}_norm.weight    [head_dim]  (qwen3, gemma3: per-head RMSNorm before RoPE)
    model.layers.{i}.pre_feedforward_layernorm.weight  [hidden]  (gemma3: the MLP's input norm; its
    model.layers.{i}.post_feedforward_layernorm.weight [hidden]   post_attention_layernorm normalises
                                                                  the attention output)

and `inv_freq(layer)` (llama3 / linear rope_scaling, Gemma's local base), `window(layer)` (sliding
window mask 0 <= i - j < W), `attention_scale()` (Gemma's query_pre_attn_scalar), `family_norm`
(Gemma's 1 + w), GeGLU with the tanh GELU and the sqrt(hidden) embedding scale for gemma3.

Configuration
- `LlamaConfig`: the Hugging Face config.json keys pith reads; `from_dict`, `load`, `to_hf_dict`,
  `validate`, `mixer(layer)`, `mixer_mlp_size`. `head_dim` defaults to hidden_size /
  num_attention_heads but may differ (Qwen3, Gemma). Residual keys `attn_res_mode`,
  `attn_res_block_size` (mode "block" when only the block size is given); `token_mixers`
  (a list of names or {"layout", "variant"}), `mixer_mlp_intermediate_size`, `approximate_norm`,
  `approximate_order2`. `to_hf_dict` writes the extra keys only when they are not the defaults.
- `standard_in_layout(layout, i, L)`, `resolve_token_mixers(spec, L)`: the per-layer mixer names.
- `checkpoint_tensor_names(config, fixed_length)`: every tensor name in model order with its shape;
  `optional_tensor_names(config)`: the ones a checkpoint may omit (q/k_proj of fixed-stream layers).

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
- `expand_kv(t, heads)`: kv-head tensor [n, kv_heads, d] repeated to [n, heads, d] (query head h
  reads kv head h // (heads / kv_heads), Hugging Face `repeat_kv`).
- `attention(q, k, v, q_positions, k_positions)`: causal grouped-query softmax attention; query at
  position p sees the keys whose position is <= p; scores scaled by 1/sqrt(head_dim).
- `mlp(x, gate, up, down)`: SwiGLU, down(silu(gate(x)) * up(x)), silu(z) = z * sigmoid(z).

Token mixers (DA §3; docs/layers.md "Token mixers"); q [m, heads, d], k and v [n, kv_heads, d]
- `second_order_features(u, order2)`: u ⊙ u ("elementwise") or the flattened u ⊗ u ("outer").
- `approximate_attention(q, k, v, positions, norm, order2)`: parallel (full-sequence) form of the
  Taylor linear attention, scores 1 + q·k/√d + q2·k2/(2d) (joint) or the three per-term ratios.
- `ApproximateState`: its recurrent form, per kv head Σv, count, Σ k vᵀ, Σ k, Σ k2 vᵀ, Σ k2; `step`.
- `non_approximate_attention(q, k, v, positions)`: parallel form, o_i = Σ_{j<=i} e^{s_j} v_j / Σ e^{s_j}
  with s_j = <q_j, k_j>/√d per query head (q already through silu).
- `NonApproximateState`: its recurrent form, online softmax (numerator, denominator, running max).
- `token_mixer(...)`: one layer's mixer on the normed input x (and the raw embedding e), through
  o_proj; with a cache (or `RunOptions.mixer_form == "recurrent"`) the state forms run token by token.

Residual stream (AR §2, §3.1, §3.2, §4.2; docs/layers.md "Residual stream")
- `residual_queries(weights, config)`: the folded pseudo-queries q_eff = res_norm ⊙ res_proj.
- `mix(q_eff, sources, eps)`: s_j = dot(v_j, q_eff) * rsqrt(mean(v_j^2) + eps), softmax over j,
  Σ p_j v_j, in at least float32.
- `residual_standard`, `residual_full`, `residual_block` (the AR §3.1 state machine) and
  `residual_block_two_phase` (AR §4.2: `block_phase1` scores all sites of a block against the
  completed blocks, giving max, sum and unnormalised output; `block_phase2_merge` folds in the
  running partial with an online-softmax merge). `residual_stream` picks one.

The model
- `RunOptions`: mixer_form ("parallel" | "recurrent"), block_path ("direct" | "two_phase"),
  fixed_stream (a dict: run the fixed-stream pass and record each fixed layer's q and k there),
  site_check (a list: the two-phase path appends each site's relative difference from the direct mix).
- `KVCache`: per layer the positioned keys, the values and their positions (standard,
  static_emb_qk, rnd_emb_qk, fixed_seq_qk), or the recurrent state (approximate, non_approximate).
- `forward(weights, config, ids, rope_layout="half", cache=None, positions=None, run=None)`: logits
  [len(ids), vocab] for every given token; with a cache, the tokens attend to the cached states
  and their own keys/values are appended (prefill or decode); positions default to continuing
  the cache (0, 1, 2, ... without one). `forward_hidden` is the part between the embedding and the
  final norm, on any input embeddings.
- `forward_logits(weights, config, ids, rope_layout, run)`: logits for every position of a token
  sequence, full causal forward, no cache.
- `decode_incremental(weights, config, ids, rope_layout)`: the same logits computed one token at
  a time through a KVCache (the path an engine takes when generating).
- `argmax_lowest(row)`: index of the largest value, ties going to the lowest index.
- `greedy_decode(weights, config, ids, steps, rope_layout, run)`: `steps` tokens of greedy decoding
  after the prompt, recomputing the full forward at each step; also returns each step's margin
  (top-1 minus top-2 logit), which says how robust the golden tokens are to rounding.

Fixed q/k streams (rnd_emb_qk, fixed_seq_qk; DA §3.5, §3.6)
- `random_stream(hidden, length, seed)`: the seeded N(0, 1) input [length, hidden] of rnd_emb_qk.
- `token_stream(weights, ids)`: the embedding rows of fixed token ids (fixed_seq_qk).
- `export_fixed_qk(weights, config, stream)`: runs the network on the stream, the fixed layers
  attending with their own q = x W_q, k = x W_k, v = x W_v (no RoPE), and returns
  {layer's fixed_q: q, fixed_k: k} with x the layer's normed input on the stream.

Layouts and checkpoints
- `permute_half_to_interleaved(w, n_heads)` / `permute_interleaved_to_half(w, n_heads)`: the row
  permutation of a q_proj/k_proj weight that turns a half-layout model into the equivalent
  interleaved-layout model (llama.cpp convert_hf_to_gguf.py `LlamaModel.permute`) and back: within
  each head of head_dim rows, new row 2j + s = old row s * head_dim/2 + j (s in {0, 1}).
- `weights_half_to_interleaved(weights, config)`: a copy of the weights with every q_proj
  (n_heads) and k_proj (kv_heads) permuted so that rope_layout="interleaved" gives the same logits
  (mixers without RoPE only see q·k, which the common permutation leaves unchanged).
- `cast_weights(weights, dtype)`, `weights_from_numpy(arrays)`, `load_checkpoint(folder)` (reads
  config.json + model.safetensors, F32/F16/BF16 upcast to float32).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

ROPE_LAYOUTS = ("half", "interleaved")
RESIDUAL_MODES = ("standard", "block", "full")
TOKEN_MIXERS = ("standard", "mlp", "approximate", "non_approximate", "rnd_emb_qk", "fixed_seq_qk", "static_emb_qk")
FIXED_STREAM_MIXERS = ("rnd_emb_qk", "fixed_seq_qk")
HYBRID_LAYOUTS = ("even", "odd", "top", "bottom", "middle", "quarter", "first", "last", "first_last")
APPROXIMATE_NORMS = ("joint", "per_term")
APPROXIMATE_ORDER2 = ("elementwise", "outer")
APPROXIMATE_EPS = 1e-12  # added to the linear-attention denominators (zoology's TaylorExp)
# Families (notes/model_families.md): name -> (architectures[0], model_type) of the Hugging Face config
FAMILIES = {"llama": ("LlamaForCausalLM", "llama"), "mistral": ("MistralForCausalLM", "mistral"),
            "qwen2": ("Qwen2ForCausalLM", "qwen2"), "qwen3": ("Qwen3ForCausalLM", "qwen3"),
            "gemma3": ("Gemma3ForCausalLM", "gemma3_text")}
GEMMA_SLIDING_WINDOW_PATTERN = 6  # Gemma 3: every sixth layer attends to the whole context


# ----------------------------------------------------------------------------------------------
# Configuration


def standard_in_layout(layout: str, i: int, num_layers: int) -> bool:
    """Whether 0-indexed layer i of num_layers keeps standard attention in a hybrid layout (DA Table 11)."""
    L = num_layers
    rules = {
        "even": i % 2 == 1,            # 1-indexed even layers
        "odd": i % 2 == 0,
        "top": i < L // 2,
        "bottom": i >= L - L // 2,
        "middle": i < L // 4 or i >= L - L // 4,
        "quarter": (i + 1) % 4 == 0,
        "first": i == 0,
        "last": i == L - 1,
        "first_last": i == 0 or i == L - 1,
    }
    if layout not in rules:
        raise ValueError(f"config: token_mixers layout must be one of {HYBRID_LAYOUTS}, not {layout!r}")
    return rules[layout]


def resolve_token_mixers(spec, num_layers: int) -> list[str]:
    """The mixer name of every layer from the config value of `token_mixers` (None, list or layout dict)."""
    if spec is None:
        names = ["standard"] * num_layers
    elif isinstance(spec, dict):
        if set(spec) != {"layout", "variant"}:
            raise ValueError(f"config: token_mixers object must have exactly the keys 'layout' and 'variant', not {sorted(spec)}")
        names = ["standard" if standard_in_layout(spec["layout"], i, num_layers) else spec["variant"]
                 for i in range(num_layers)]
    else:
        names = list(spec)
        if len(names) != num_layers:
            raise ValueError(f"config: token_mixers lists {len(names)} names for {num_layers} layers")
    for i, name in enumerate(names):
        if name not in TOKEN_MIXERS:
            raise ValueError(f"config: token mixer {name!r} of layer {i} is not one of {TOKEN_MIXERS}")
    return names


def family_of(d: dict) -> str:
    """The family of a Hugging Face config dict, from architectures[0] (or model_type; neither: llama)."""
    names = d.get("architectures") or []
    for family, (architecture, model_type) in FAMILIES.items():
        if (names and names[0] == architecture) or (not names and d.get("model_type") == model_type):
            return family
    if names or d.get("model_type") not in (None, "llama"):
        raise ValueError(f"config: architecture {names or d.get('model_type')} is not one of {list(FAMILIES)}")
    return "llama"


def rope_inverse_frequencies(theta: float, head_dim: int) -> torch.Tensor:
    """theta^(-2j / head_dim) for j in [0, head_dim / 2), float64."""
    return theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


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
    # pith extensions (docs/layers.md); to_hf_dict writes them only when they differ from these defaults
    attn_res_mode: str = "standard"
    attn_res_block_size: int | None = None
    token_mixers: object = None  # as in config.json: None, a tuple of names or {"layout": ..., "variant": ...}
    mixer_mlp_intermediate_size: int | None = None
    approximate_norm: str = "joint"
    approximate_order2: str = "elementwise"
    # families (notes/model_families.md); to_hf_dict writes them in each family's own keys
    family: str = "llama"
    rope_scaling: dict | None = None        # {"rope_type": "linear" | "llama3", ...}; Gemma 3: full-attention layers only
    sliding_window: int | None = None       # Mistral: every layer; Gemma 3: the sliding layers
    layer_types: tuple | None = None        # "sliding_attention" / "full_attention" per layer (Gemma 3 default: pattern 6)
    rope_local_base_freq: float | None = None  # Gemma 3's sliding layers (default 10000)
    query_pre_attn_scalar: float | None = None  # Gemma 3: scores scaled by its -1/2 power (default 256)

    @staticmethod
    def from_dict(d: dict) -> "LlamaConfig":
        heads = int(d["num_attention_heads"])
        block_size = d.get("attn_res_block_size")
        mixers = d.get("token_mixers")
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
            tie_word_embeddings=bool(d.get("tie_word_embeddings", family_of(d) == "gemma3")),
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            attn_res_mode=d.get("attn_res_mode") or ("block" if block_size is not None else "standard"),
            attn_res_block_size=None if block_size is None else int(block_size),
            token_mixers=tuple(mixers) if isinstance(mixers, list) else mixers,
            mixer_mlp_intermediate_size=(None if d.get("mixer_mlp_intermediate_size") is None
                                         else int(d["mixer_mlp_intermediate_size"])),
            approximate_norm=d.get("approximate_norm", "joint"),
            approximate_order2=d.get("approximate_order2", "elementwise"),
            family=family_of(d),
            rope_scaling=d.get("rope_scaling"),
            sliding_window=d.get("sliding_window"),
            layer_types=tuple(d["layer_types"]) if d.get("layer_types") else None,
            rope_local_base_freq=d.get("rope_local_base_freq"),
            query_pre_attn_scalar=d.get("query_pre_attn_scalar"),
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
        if self.attn_res_mode not in RESIDUAL_MODES:
            raise ValueError(f"config: attn_res_mode must be one of {RESIDUAL_MODES}, not {self.attn_res_mode!r}")
        if self.attn_res_mode == "block" and (self.attn_res_block_size is None or self.attn_res_block_size < 1):
            raise ValueError("config: attn_res_mode 'block' needs attn_res_block_size >= 1")
        resolve_token_mixers(self.token_mixers, self.num_hidden_layers)
        if self.mixer_mlp_intermediate_size is not None and self.mixer_mlp_intermediate_size <= 0:
            raise ValueError("config: mixer_mlp_intermediate_size must be positive")
        if self.approximate_norm not in APPROXIMATE_NORMS:
            raise ValueError(f"config: approximate_norm must be one of {APPROXIMATE_NORMS}")
        if self.approximate_order2 not in APPROXIMATE_ORDER2:
            raise ValueError(f"config: approximate_order2 must be one of {APPROXIMATE_ORDER2}")

    @property
    def gemma(self) -> bool:
        return self.family == "gemma3"

    def window(self, layer: int) -> int | None:
        """The sliding window W of a layer (key j visible to query i iff 0 <= i - j < W), None for full attention."""
        if self.sliding_window is None or self.family not in ("mistral", "gemma3"):
            return None
        if self.layer_types is not None:
            return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None
        if self.gemma:
            return None if (layer + 1) % GEMMA_SLIDING_WINDOW_PATTERN == 0 else self.sliding_window
        return self.sliding_window

    def inv_freq(self, layer: int) -> torch.Tensor:
        """RoPE inverse frequencies [head_dim / 2] of a layer in float64: Gemma 3's sliding layers use
        rope_local_base_freq unscaled; the others rope_theta rescaled by rope_scaling (linear: / factor;
        llama3: wavelengths above L / low_freq_factor divided by factor, below L / high_freq_factor kept,
        a linear blend in between)."""
        if self.gemma and self.window(layer) is not None:
            return rope_inverse_frequencies(self.rope_local_base_freq or 10000.0, self.head_dim)
        inv = rope_inverse_frequencies(self.rope_theta, self.head_dim)
        scaling = self.rope_scaling or {}
        kind = scaling.get("rope_type", scaling.get("type", "default"))
        if kind == "linear":
            return inv / scaling["factor"]
        if kind == "llama3":
            factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
            context = scaling["original_max_position_embeddings"]
            wavelength = 2 * math.pi / inv
            blend = (context / wavelength - low) / (high - low)
            scaled = torch.where(wavelength > context / low, inv / factor, inv)
            middle = (wavelength >= context / high) & (wavelength <= context / low)
            return torch.where(middle, (1 - blend) * inv / factor + blend * inv, scaled)
        if kind != "default":
            raise ValueError(f"config: rope type {kind!r} is not implemented")
        return inv

    def attention_scale(self) -> float | None:
        """Gemma 3's query_pre_attn_scalar^-1/2; None: the scores are divided by sqrt(head_dim)."""
        return (self.query_pre_attn_scalar or 256.0) ** -0.5 if self.gemma else None

    def mixer(self, layer: int) -> str:
        """The token mixer name of a layer."""
        return resolve_token_mixers(self.token_mixers, self.num_hidden_layers)[layer]

    @property
    def mixer_mlp_size(self) -> int:
        """Intermediate width m of the "mlp" token mixer (default 4 * hidden_size / 3, integer division)."""
        return self.mixer_mlp_intermediate_size or 4 * self.hidden_size // 3

    def to_hf_dict(self, torch_dtype: str = "float32") -> dict:
        """The Hugging Face config.json contents for this model (extension keys only when not default)."""
        architecture, model_type = FAMILIES[self.family]
        d = {"architectures": [architecture], "model_type": model_type}
        defaults = {f.name: f.default for f in fields(self)}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "family":
                continue
            if f.name in ("rope_scaling", "sliding_window", "layer_types", "rope_local_base_freq",
                          "query_pre_attn_scalar"):
                if value is not None:
                    d[f.name] = list(value) if isinstance(value, tuple) else value
                continue
            if f.name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps", "rope_theta",
                          "tie_word_embeddings", "max_position_embeddings") or value != defaults[f.name]:
                d[f.name] = list(value) if isinstance(value, tuple) else value
        if self.gemma:
            d["hidden_activation"] = "gelu_pytorch_tanh"
        else:
            d["hidden_act"] = "silu"
        d["torch_dtype"] = torch_dtype
        return d


def layer_tensor_names(config: LlamaConfig, i: int, fixed_length: int | None) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of layer i's tensors in model order."""
    c, p = config, f"model.layers.{i}."
    q_rows, kv_rows, d = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.hidden_size
    mixer = c.mixer(i)
    out = [(p + "input_layernorm.weight", (d,))]
    if mixer == "mlp":
        m = c.mixer_mlp_size
        out += [(p + "mixer_mlp.gate_proj.weight", (m, d)), (p + "mixer_mlp.up_proj.weight", (m, d)),
                (p + "mixer_mlp.down_proj.weight", (d, m))]
    else:
        out += [(p + "self_attn.q_proj.weight", (q_rows, d)), (p + "self_attn.k_proj.weight", (kv_rows, d)),
                (p + "self_attn.v_proj.weight", (kv_rows, d)), (p + "self_attn.o_proj.weight", (d, q_rows))]
        if c.family == "qwen2":
            out += [(p + "self_attn.q_proj.bias", (q_rows,)), (p + "self_attn.k_proj.bias", (kv_rows,)),
                    (p + "self_attn.v_proj.bias", (kv_rows,))]
        if c.family in ("qwen3", "gemma3"):
            out += [(p + "self_attn.q_norm.weight", (c.head_dim,)), (p + "self_attn.k_norm.weight", (c.head_dim,))]
    if mixer in FIXED_STREAM_MIXERS:
        if fixed_length is None:
            raise ValueError(f"layer {i} ({mixer}) has a fixed q/k stream: its length L_max must be given")
        out += [(p + "self_attn.fixed_q", (fixed_length, q_rows)), (p + "self_attn.fixed_k", (fixed_length, kv_rows))]
    out += [(p + "post_attention_layernorm.weight", (d,))]
    if c.gemma:  # Gemma 3: post_attention_layernorm normalises the attention output; these two the MLP's input and output
        out += [(p + "pre_feedforward_layernorm.weight", (d,)), (p + "post_feedforward_layernorm.weight", (d,))]
    out += [
        (p + "mlp.gate_proj.weight", (c.intermediate_size, d)),
        (p + "mlp.up_proj.weight", (c.intermediate_size, d)),
        (p + "mlp.down_proj.weight", (d, c.intermediate_size)),
    ]
    if c.attn_res_mode != "standard":
        out += [(p + "self_attention_res_norm.weight", (d,)), (p + "self_attention_res_proj.weight", (1, d)),
                (p + "mlp_res_norm.weight", (d,)), (p + "mlp_res_proj.weight", (1, d))]
    return out


def checkpoint_tensor_names(config: LlamaConfig, fixed_length: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor of the checkpoint, in model order (fixed_length: L_max of fixed_q/k)."""
    c = config
    out = [("model.embed_tokens.weight", (c.vocab_size, c.hidden_size))]
    for i in range(c.num_hidden_layers):
        out += layer_tensor_names(c, i, fixed_length)
    if c.attn_res_mode != "standard":
        out += [("model.output_attn_res_norm.weight", (c.hidden_size,)),
                ("model.output_attn_res_proj.weight", (1, c.hidden_size))]
    out.append(("model.norm.weight", (c.hidden_size,)))
    if not c.tie_word_embeddings:
        out.append(("lm_head.weight", (c.vocab_size, c.hidden_size)))
    return out


def optional_tensor_names(config: LlamaConfig) -> set[str]:
    """Tensors a checkpoint may omit: q_proj/k_proj of rnd_emb_qk/fixed_seq_qk layers (they only made the stream)."""
    return {f"model.layers.{i}.self_attn.{w}_proj.weight" for i in range(config.num_hidden_layers)
            if config.mixer(i) in FIXED_STREAM_MIXERS for w in ("q", "k")}


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


def rope_cos_sin_frequencies(positions: torch.Tensor, inv_freq: torch.Tensor,
                             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of positions[:, None] * inv_freq[None, :] (float64 angles), each [seq, head_dim / 2]."""
    angles = positions.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]
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


def expand_kv(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[n, kv_heads, ...] -> [n, heads, ...]: kv head j serves query heads j*group .. (j+1)*group - 1."""
    return t.repeat_interleave(heads // t.shape[1], dim=1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              q_positions: torch.Tensor, k_positions: torch.Tensor, window: int | None = None,
              scale: float | None = None) -> torch.Tensor:
    """Causal grouped-query attention.

    q [m, heads, d]; k, v [n, kv_heads, d]; positions [m] and [n]. Query head h reads kv head
    h // (heads / kv_heads). Returns [m, heads, d] = softmax(q k^T / sqrt(d), keys with
    position <= the query's) v.
    """
    heads, d = q.shape[1], q.shape[2]
    k, v = expand_kv(k, heads), expand_kv(v, heads)  # [n, heads, d]
    scores = torch.einsum("mhd,nhd->hmn", q, k)  # [heads, m, n]
    scores = scores / math.sqrt(d) if scale is None else scores * scale
    visible = k_positions[None, :] <= q_positions[:, None]  # [m, n]
    if window is not None:  # sliding window: the query and the W - 1 keys before it
        visible &= q_positions[:, None] - k_positions[None, :] < window
    scores = scores.masked_fill(~visible[None, :, :], float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    return torch.einsum("hmn,nhd->mhd", probabilities, v)


def mlp(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor, activation: str = "silu") -> torch.Tensor:
    """SwiGLU: down(silu(gate(x)) * up(x)); activation "gelu_tanh": GeGLU with the tanh GELU (Gemma)."""
    g = x @ gate.T
    g = F.gelu(g, approximate="tanh") if activation == "gelu_tanh" else F.silu(g)
    return (g * (x @ up.T)) @ down.T


def family_norm(config: "LlamaConfig", weight: torch.Tensor) -> torch.Tensor:
    """The gain an RMSNorm multiplies by: Gemma's 1 + w, everyone else's w."""
    return 1.0 + weight if config.gemma else weight


# ----------------------------------------------------------------------------------------------
# Token mixers: approximate (Taylor linear attention) and non_approximate (self-gated prefix softmax)


def second_order_features(u: torch.Tensor, order2: str) -> torch.Tensor:
    """u2 of u [..., d]: u ⊙ u [..., d] ("elementwise") or the flattened outer product u ⊗ u [..., d*d] ("outer")."""
    if order2 == "elementwise":
        return u * u
    if order2 == "outer":
        return (u[..., :, None] * u[..., None, :]).flatten(-2)
    raise ValueError(f"approximate_order2 must be one of {APPROXIMATE_ORDER2}, not {order2!r}")


def approximate_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                          norm: str, order2: str) -> torch.Tensor:
    """Parallel form of the approximate mixer over one full sequence: q [n, heads, d], k, v [n, kv_heads, d].

    first[h, i, j] = q_i·k_j / √d and second[h, i, j] = q2_i·k2_j / (2d) (for "outer" that is
    (q_i·k_j)² / (2d), computed without forming q ⊗ q), zero for j > i. Joint:
    o_i = Σ_j (1 + first + second) v_j / (Σ_j (1 + first + second) + 1e-12). Per-term:
    o_i = mean_{j<=i} v_j + Σ_j first v_j / (Σ_j first + 1e-12) + Σ_j second v_j / (Σ_j second + 1e-12).
    """
    heads, d = q.shape[1], q.shape[2]
    k, v = expand_kv(k, heads), expand_kv(v, heads)
    n = len(positions)
    visible = (positions[None, :] <= positions[:, None]).to(q.dtype).expand(heads, n, n)  # [heads, i, j]
    dot = torch.einsum("ihd,jhd->hij", q, k)
    first = dot / math.sqrt(d) * visible
    if order2 == "outer":
        second = dot * dot / (2 * d) * visible
    else:
        second = torch.einsum("ihd,jhd->hij", q * q, k * k) / (2 * d) * visible
    weigh = lambda a: torch.einsum("hij,jhd->ihd", a, v)      # Σ_j a[h, i, j] v_j  -> [n, heads, d]
    total = lambda a: a.sum(dim=-1).T[:, :, None]              # Σ_j a[h, i, j]      -> [n, heads, 1]
    if norm == "joint":
        a = visible + first + second
        return weigh(a) / (total(a) + APPROXIMATE_EPS)
    if norm == "per_term":
        return (weigh(visible) / total(visible) + weigh(first) / (total(first) + APPROXIMATE_EPS)
                + weigh(second) / (total(second) + APPROXIMATE_EPS))
    raise ValueError(f"approximate_norm must be one of {APPROXIMATE_NORMS}, not {norm!r}")


class ApproximateState:
    """Recurrent form of the approximate mixer: a fixed-size state per kv head (no KV cache).

    sum_v [kv, d], count, sum_kv = Σ k vᵀ [kv, d, d], sum_k [kv, d], sum_k2v = Σ k2 vᵀ [kv, D2, d],
    sum_k2 [kv, D2], with D2 = d ("elementwise") or d*d ("outer").
    """

    def __init__(self, kv_heads: int, head_dim: int, norm: str, order2: str, dtype: torch.dtype):
        d, d2 = head_dim, head_dim * head_dim if order2 == "outer" else head_dim
        self.norm, self.order2, self.head_dim = norm, order2, head_dim
        self.count = 0
        self.sum_v = torch.zeros((kv_heads, d), dtype=dtype)
        self.sum_kv = torch.zeros((kv_heads, d, d), dtype=dtype)
        self.sum_k = torch.zeros((kv_heads, d), dtype=dtype)
        self.sum_k2v = torch.zeros((kv_heads, d2, d), dtype=dtype)
        self.sum_k2 = torch.zeros((kv_heads, d2), dtype=dtype)

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Adds token (k [kv, d], v [kv, d]) to the state, returns the output [heads, d] for its q [heads, d]."""
        k2 = second_order_features(k, self.order2)
        self.count += 1
        self.sum_v = self.sum_v + v
        self.sum_kv = self.sum_kv + k[:, :, None] * v[:, None, :]
        self.sum_k = self.sum_k + k
        self.sum_k2v = self.sum_k2v + k2[:, :, None] * v[:, None, :]
        self.sum_k2 = self.sum_k2 + k2

        heads, d = q.shape[0], self.head_dim
        group = lambda s: s.repeat_interleave(heads // s.shape[0], dim=0)  # kv head state -> query heads
        q2 = second_order_features(q, self.order2)
        numerator1 = torch.einsum("hd,hde->he", q, group(self.sum_kv)) / math.sqrt(d)
        denominator1 = (q * group(self.sum_k)).sum(-1, keepdim=True) / math.sqrt(d)
        numerator2 = torch.einsum("hd,hde->he", q2, group(self.sum_k2v)) / (2 * d)
        denominator2 = (q2 * group(self.sum_k2)).sum(-1, keepdim=True) / (2 * d)
        if self.norm == "joint":
            return ((group(self.sum_v) + numerator1 + numerator2)
                    / (self.count + denominator1 + denominator2 + APPROXIMATE_EPS))
        return (group(self.sum_v) / self.count + numerator1 / (denominator1 + APPROXIMATE_EPS)
                + numerator2 / (denominator2 + APPROXIMATE_EPS))


def non_approximate_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """s_j = <q_j, k_j> / √d per query head (k of the head's kv group): q [n, heads, d], k [n, kv, d] -> [n, heads]."""
    return (q * expand_kv(k, q.shape[1])).sum(-1) / math.sqrt(q.shape[2])


def non_approximate_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Parallel form of the non_approximate mixer: o_i = Σ_{j<=i} e^{s_j} v_j / Σ_{j<=i} e^{s_j} (q already silu'd)."""
    heads = q.shape[1]
    s = non_approximate_scores(q, k)                                   # [n, heads]
    visible = positions[None, :] <= positions[:, None]                 # [i, j]
    scores = s.T[:, None, :].expand(heads, len(positions), len(positions))  # [heads, i, j] = s_j
    probabilities = torch.softmax(scores.masked_fill(~visible[None], float("-inf")), dim=-1)
    return torch.einsum("hij,jhd->ihd", probabilities, expand_kv(v, heads))


class NonApproximateState:
    """Recurrent form of the non_approximate mixer: per query head a running numerator [d], denominator and max."""

    def __init__(self, heads: int, head_dim: int, dtype: torch.dtype):
        self.numerator = torch.zeros((heads, head_dim), dtype=dtype)
        self.denominator = torch.zeros((heads,), dtype=dtype)
        self.max = torch.full((heads,), float("-inf"), dtype=dtype)

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Online softmax: m' = max(m, s); num = num e^{m-m'} + e^{s-m'} v; den = den e^{m-m'} + e^{s-m'}."""
        s = non_approximate_scores(q[None], k[None])[0]               # [heads]
        v = expand_kv(v[None], q.shape[0])[0]                          # [heads, d]
        new_max = torch.maximum(self.max, s)
        rescale, weight = torch.exp(self.max - new_max), torch.exp(s - new_max)
        self.numerator = self.numerator * rescale[:, None] + weight[:, None] * v
        self.denominator = self.denominator * rescale + weight
        self.max = new_max
        return self.numerator / self.denominator[:, None]


# ----------------------------------------------------------------------------------------------
# The model: run options, cache, token mixers, residual stream


@dataclass
class RunOptions:
    """How `forward` runs (the default is the goldens' path: parallel forms, direct block mix)."""
    mixer_form: str = "parallel"         # "recurrent": approximate/non_approximate run their state form token by token
    block_path: str = "direct"           # "two_phase": block mode through AR §4.2's two-phase schedule
    fixed_stream: dict | None = None     # fixed-stream pass: rnd/fixed layers use their own q, k (no RoPE), recorded here
    site_check: list | None = None       # two-phase: appends max|two-phase - direct| / max|direct| per site


class KVCache:
    """Per layer: positioned keys [n, kv_heads, head_dim], values, positions [n]; or a recurrent state."""

    def __init__(self, config: LlamaConfig, dtype: torch.dtype = torch.float32):
        c = config
        empty = lambda: torch.zeros((0, c.num_key_value_heads, c.head_dim), dtype=dtype)
        self.keys = [empty() for _ in range(c.num_hidden_layers)]
        self.values = [empty() for _ in range(c.num_hidden_layers)]
        self.positions = [torch.zeros((0,), dtype=torch.int64) for _ in range(c.num_hidden_layers)]
        self.states: list[ApproximateState | NonApproximateState | None] = [None] * c.num_hidden_layers
        self.length = 0  # one past the largest position seen

    def next_position(self) -> int:
        return self.length

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor):
        self.keys[layer] = torch.cat((self.keys[layer], keys))
        self.values[layer] = torch.cat((self.values[layer], values))
        self.positions[layer] = torch.cat((self.positions[layer], positions))


def heads_of(x: torch.Tensor, weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    """x [seq, in] @ weight.T split into heads: [seq, out / head_dim, head_dim]."""
    return (x @ weight.T).view(x.shape[0], -1, head_dim)


def softmax_mixer(q, k, v, positions, cache: KVCache | None, layer: int, window: int | None = None,
                  scale: float | None = None) -> torch.Tensor:
    """Causal softmax attention for positioned q, k (standard, static_emb_qk, fixed q/k), through the cache if any."""
    k_positions = positions
    if cache is not None:
        cache.append(layer, k, v, positions)
        k, v, k_positions = cache.keys[layer], cache.values[layer], cache.positions[layer]
    return attention(q, k, v, positions, k_positions, window, scale)


def recurrent_mixer(make_state, q, k, v, cache: KVCache | None, layer: int) -> torch.Tensor:
    """Runs a state form token by token, continuing the cache's state of this layer if there is one."""
    state = make_state() if cache is None or cache.states[layer] is None else cache.states[layer]
    if cache is not None:
        cache.states[layer] = state
    return torch.stack([state.step(q[t], k[t], v[t]) for t in range(q.shape[0])])


def fixed_rows(table: torch.Tensor, positions: torch.Tensor, layer: int, head_dim: int) -> torch.Tensor:
    """Rows `positions` of a stored fixed_q / fixed_k table, as heads; positions >= L_max are an error."""
    l_max = table.shape[0]
    if int(positions.max()) >= l_max:
        raise ValueError(f"layer {layer}: position {int(positions.max())} is beyond the fixed q/k stream "
                         f"(L_max = {l_max}); this layer cannot run past position {l_max - 1}")
    return table[positions].view(len(positions), -1, head_dim)


def token_mixer(weights: dict[str, torch.Tensor], config: LlamaConfig, layer: int, x: torch.Tensor,
                e: torch.Tensor, positions: torch.Tensor, cache: KVCache | None, rope_layout: str,
                run: RunOptions) -> torch.Tensor:
    """Layer `layer`'s token mixer on x = rms_norm(layer input, input_layernorm) [seq, hidden]; e is the
    raw token embedding of the same tokens. Returns what goes to the residual stream [seq, hidden]."""
    c, p = config, f"model.layers.{layer}."
    w = lambda name: weights[p + name]
    mixer, d = c.mixer(layer), c.head_dim
    def rope(t):
        cos, sin = rope_cos_sin_frequencies(positions, c.inv_freq(layer), t.dtype)
        return apply_rope_half(t, cos, sin) if rope_layout == "half" else apply_rope_interleaved(t, cos, sin)

    def project(name):  # [seq, heads, d]: x W^T (+ Qwen2's bias), through Qwen3/Gemma's per-head norm for q and k
        y = x @ w(f"self_attn.{name}_proj.weight").T
        if p + f"self_attn.{name}_proj.bias" in weights:
            y = y + w(f"self_attn.{name}_proj.bias")
        y = y.view(x.shape[0], -1, d)
        if name != "v" and p + f"self_attn.{name}_norm.weight" in weights:
            y = rms_norm(y, family_norm(c, w(f"self_attn.{name}_norm.weight")), c.rms_norm_eps)
        return y

    if mixer == "mlp":
        return mlp(x, w("mixer_mlp.gate_proj.weight"), w("mixer_mlp.up_proj.weight"), w("mixer_mlp.down_proj.weight"))
    v = project("v")
    if mixer == "standard":
        q, k = rope(project("q")), rope(project("k"))
        out = softmax_mixer(q, k, v, positions, cache, layer, c.window(layer), c.attention_scale())
    elif mixer == "static_emb_qk":
        q, k = rope(heads_of(e, w("self_attn.q_proj.weight"), d)), rope(heads_of(e, w("self_attn.k_proj.weight"), d))
        out = softmax_mixer(q, k, v, positions, cache, layer)
    elif mixer in FIXED_STREAM_MIXERS and run.fixed_stream is not None:
        # the stream pass: this layer attends with its own q, k, v (no RoPE) and records q, k
        q, k = heads_of(x, w("self_attn.q_proj.weight"), d), heads_of(x, w("self_attn.k_proj.weight"), d)
        run.fixed_stream[p + "self_attn.fixed_q"] = q.reshape(len(positions), -1).clone()
        run.fixed_stream[p + "self_attn.fixed_k"] = k.reshape(len(positions), -1).clone()
        out = softmax_mixer(q, k, v, positions, cache, layer)
    elif mixer in FIXED_STREAM_MIXERS:
        q, k = fixed_rows(w("self_attn.fixed_q"), positions, layer, d), fixed_rows(w("self_attn.fixed_k"), positions, layer, d)
        out = softmax_mixer(q, k, v, positions, cache, layer)
    elif mixer == "approximate":
        q, k = heads_of(x, w("self_attn.q_proj.weight"), d), heads_of(x, w("self_attn.k_proj.weight"), d)
        if cache is None and run.mixer_form == "parallel":
            out = approximate_attention(q, k, v, positions, c.approximate_norm, c.approximate_order2)
        else:
            make = lambda: ApproximateState(c.num_key_value_heads, d, c.approximate_norm, c.approximate_order2, x.dtype)
            out = recurrent_mixer(make, q, k, v, cache, layer)
    elif mixer == "non_approximate":
        q, k = F.silu(heads_of(x, w("self_attn.q_proj.weight"), d)), heads_of(x, w("self_attn.k_proj.weight"), d)
        if cache is None and run.mixer_form == "parallel":
            out = non_approximate_attention(q, k, v, positions)
        else:
            out = recurrent_mixer(lambda: NonApproximateState(c.num_attention_heads, d, x.dtype), q, k, v, cache, layer)
    else:
        raise ValueError(f"layer {layer}: unknown token mixer {mixer!r}")
    return out.reshape(x.shape[0], -1) @ w("self_attn.o_proj.weight").T


def residual_queries(weights: dict[str, torch.Tensor], config: LlamaConfig):
    """Folded pseudo-queries q_eff = res_norm.weight ⊙ res_proj.weight[0]: (attention sites, MLP sites, output site)."""
    q = lambda site: weights[site + "_res_norm.weight"] * weights[site + "_res_proj.weight"][0]
    layers = range(config.num_hidden_layers)
    return ([q(f"model.layers.{i}.self_attention") for i in layers], [q(f"model.layers.{i}.mlp") for i in layers],
            q("model.output_attn"))


def mix_dtype(dtype: torch.dtype) -> torch.dtype:
    """The mix runs in float32 (float64 when the whole reference does)."""
    return torch.promote_types(dtype, torch.float32)


def inverse_rms(v: torch.Tensor, eps: float) -> torch.Tensor:
    """rsqrt(mean(v^2) + eps) over the last axis."""
    return torch.rsqrt(v.pow(2).mean(dim=-1) + eps)


def mix(q_eff: torch.Tensor, sources: list[torch.Tensor], eps: float) -> torch.Tensor:
    """Depth attention over raw sources [seq, d] each: s_j = dot(v_j, q_eff) * rsqrt(mean(v_j^2) + eps),
    p = softmax_j(s) (max subtracted), result Σ_j p_j v_j (AR §3.2). One source: itself (identity)."""
    if len(sources) == 1:
        return sources[0]
    dtype = mix_dtype(sources[0].dtype)
    values = torch.stack(sources).to(dtype)                                # [n, seq, d]
    scores = (values @ q_eff.to(dtype)) * inverse_rms(values, eps)         # [n, seq]
    probabilities = torch.softmax(scores, dim=0)
    return (probabilities[..., None] * values).sum(dim=0).to(sources[0].dtype)


def residual_standard(weights, config: LlamaConfig, e, attn_site, mlp_site, run: RunOptions) -> torch.Tensor:
    """h = embedding; per layer h += attn(rms_norm(h)), h += mlp(rms_norm(h)). Returns h."""
    h = e
    for layer in range(config.num_hidden_layers):
        h = h + attn_site(layer, h)
        h = h + mlp_site(layer, h)
    return h


def residual_full(weights, config: LlamaConfig, e, attn_site, mlp_site, run: RunOptions) -> torch.Tensor:
    """Full AttnRes (AR §2): every sub-layer output is a source; each site mixes all sources so far."""
    q_attn, q_mlp, q_out = residual_queries(weights, config)
    eps = config.rms_norm_eps
    sources = [e]
    for layer in range(config.num_hidden_layers):
        sources.append(attn_site(layer, mix(q_attn[layer], sources, eps)))  # layer 0: the embedding alone
        sources.append(mlp_site(layer, mix(q_mlp[layer], sources, eps)))
    return mix(q_out, sources, eps)


def residual_block(weights, config: LlamaConfig, e, attn_site, mlp_site, run: RunOptions) -> torch.Tensor:
    """Block AttnRes, the AR §3.1 state machine (K3 convention, block size in decoder layers)."""
    q_attn, q_mlp, q_out = residual_queries(weights, config)
    eps, block_size = config.rms_norm_eps, config.attn_res_block_size
    blocks, prefix = [], e
    for layer in range(config.num_hidden_layers):
        x = prefix if not blocks else mix(q_attn[layer], blocks + [prefix], eps)
        if layer % block_size == 0:
            blocks.append(prefix)  # bank the raw incoming prefix
            prefix = None          # the new block starts from the attention output alone
        a = attn_site(layer, x)
        prefix = a if prefix is None else prefix + a
        y = mix(q_mlp[layer], blocks + [prefix], eps)
        prefix = prefix + mlp_site(layer, y)
    return mix(q_out, blocks + [prefix], eps)


def block_phase1(queries: torch.Tensor, blocks: list[torch.Tensor], block_inverse_rms: list[torch.Tensor]):
    """AR §4.2 phase 1: all sites' q_eff [S, d] against the completed blocks [seq, d] at once.

    Returns per site and token: max m [S, seq], sum ℓ = Σ_j e^{s_j - m} [S, seq] and the
    unnormalised output o = Σ_j e^{s_j - m} b_j [S, seq, d], with s_j = dot(b_j, q) * rsqrt(mean(b_j^2) + eps)
    (the rsqrt computed once per block when it was banked).
    """
    values = torch.stack(blocks)                                                            # [n, seq, d]
    scores = torch.einsum("sd,ntd->stn", queries, values) * torch.stack(block_inverse_rms).T[None]  # [S, seq, n]
    m = scores.max(dim=-1).values
    weights = torch.exp(scores - m[..., None])
    return m, weights.sum(dim=-1), torch.einsum("stn,ntd->std", weights, values)


def block_phase2_merge(m, ell, o, partial: torch.Tensor | None, q_eff: torch.Tensor, eps: float) -> torch.Tensor:
    """AR §4.2 phase 2 for one site: o / ℓ without a partial, else the online-softmax merge with it."""
    if partial is None:
        return o / ell[:, None]
    s_p = (partial @ q_eff) * inverse_rms(partial, eps)
    new_max = torch.maximum(m, s_p)
    a, b = torch.exp(m - new_max), torch.exp(s_p - new_max)
    return (a[:, None] * o + b[:, None] * partial) / (a * ell + b)[:, None]


def residual_block_two_phase(weights, config: LlamaConfig, e, attn_site, mlp_site, run: RunOptions) -> torch.Tensor:
    """Block AttnRes computed block by block with the two-phase schedule; the same function as residual_block."""
    q_attn, q_mlp, q_out = residual_queries(weights, config)
    eps, block_size, L = config.rms_norm_eps, config.attn_res_block_size, config.num_hidden_layers
    dtype = mix_dtype(e.dtype)
    blocks, block_inverse_rms, prefix = [], [], e.to(dtype)
    for start in range(0, L, block_size):
        layers = range(start, min(start + block_size, L))
        blocks.append(prefix)  # the prefix arriving at the boundary layer (the embedding for block 0)
        block_inverse_rms.append(inverse_rms(prefix, eps))
        prefix = None
        sites = [(kind, layer) for layer in layers for kind in ("attn", "mlp")]
        if layers[-1] == L - 1:
            sites.append(("out", None))
        queries = {"attn": q_attn, "mlp": q_mlp}
        site_queries = [(q_out if kind == "out" else queries[kind][layer]).to(dtype) for kind, layer in sites]
        m, ell, o = block_phase1(torch.stack(site_queries), blocks, block_inverse_rms)
        for index, (kind, layer) in enumerate(sites):
            h = block_phase2_merge(m[index], ell[index], o[index], prefix, site_queries[index], eps)
            if run.site_check is not None:
                direct = mix(site_queries[index], blocks + ([] if prefix is None else [prefix]), eps)
                run.site_check.append(float((h - direct).abs().max() / direct.abs().max()))
            if kind == "out":
                return h.to(e.dtype)
            if kind == "attn":
                a = attn_site(layer, h.to(e.dtype)).to(dtype)
                prefix = a if prefix is None else prefix + a
            else:
                prefix = prefix + mlp_site(layer, h.to(e.dtype)).to(dtype)
    raise AssertionError("the last block always holds the output site")


def residual_stream(weights, config: LlamaConfig, e, attn_site, mlp_site, run: RunOptions) -> torch.Tensor:
    """The residual stream of config.attn_res_mode: returns z, the input of the final norm."""
    mode = config.attn_res_mode
    if mode == "standard":
        return residual_standard(weights, config, e, attn_site, mlp_site, run)
    if mode == "full":
        return residual_full(weights, config, e, attn_site, mlp_site, run)
    if run.block_path == "two_phase":
        return residual_block_two_phase(weights, config, e, attn_site, mlp_site, run)
    return residual_block(weights, config, e, attn_site, mlp_site, run)


def forward_hidden(weights: dict[str, torch.Tensor], config: LlamaConfig, e: torch.Tensor, positions: torch.Tensor,
                   rope_layout: str = "half", cache: KVCache | None = None, run: RunOptions | None = None) -> torch.Tensor:
    """Every layer on input embeddings e [seq, hidden] at `positions`: returns z, the input of the final norm."""
    c, run = config, run or RunOptions()
    norm = lambda layer, name: weights[f"model.layers.{layer}.{name}.weight"]

    gain = lambda layer, name: family_norm(c, norm(layer, name))

    def attn_site(layer, x):
        out = token_mixer(weights, c, layer, rms_norm(x, gain(layer, "input_layernorm"), c.rms_norm_eps),
                          e, positions, cache, rope_layout, run)
        if c.gemma:  # Gemma 3 normalises the attention output before the residual add
            out = rms_norm(out, gain(layer, "post_attention_layernorm"), c.rms_norm_eps)
        return out

    def mlp_site(layer, y):
        p = f"model.layers.{layer}.mlp."
        pre = "pre_feedforward_layernorm" if c.gemma else "post_attention_layernorm"
        out = mlp(rms_norm(y, gain(layer, pre), c.rms_norm_eps), weights[p + "gate_proj.weight"],
                  weights[p + "up_proj.weight"], weights[p + "down_proj.weight"], "gelu_tanh" if c.gemma else "silu")
        if c.gemma:
            out = rms_norm(out, gain(layer, "post_feedforward_layernorm"), c.rms_norm_eps)
        return out

    z = residual_stream(weights, c, e, attn_site, mlp_site, run)
    if cache is not None:
        cache.length = max(cache.length, int(positions.max()) + 1)
    return z


def forward(weights: dict[str, torch.Tensor], config: LlamaConfig, ids, rope_layout: str = "half",
            cache: KVCache | None = None, positions=None, run: RunOptions | None = None) -> torch.Tensor:
    """Logits [len(ids), vocab] for the tokens `ids`, attending to `cache` (updated) if given."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    if positions is None:
        start = cache.next_position() if cache is not None else 0
        positions = torch.arange(start, start + len(ids), dtype=torch.int64)
    positions = torch.as_tensor(positions, dtype=torch.int64)

    e = weights["model.embed_tokens.weight"][ids]  # [seq, hidden]
    if config.gemma:  # Gemma scales the token embeddings (not the tied output head) by sqrt(hidden)
        e = e * torch.tensor(math.sqrt(config.hidden_size), dtype=e.dtype)
    h = forward_hidden(weights, config, e, positions, rope_layout, cache, run)
    h = rms_norm(h, family_norm(config, weights["model.norm.weight"]), config.rms_norm_eps)
    head = weights["model.embed_tokens.weight"] if config.tie_word_embeddings else weights["lm_head.weight"]
    return h @ head.T


def forward_logits(weights: dict[str, torch.Tensor], config: LlamaConfig, ids,
                   rope_layout: str = "half", run: RunOptions | None = None) -> torch.Tensor:
    """Logits [len(ids), vocab] at every position of `ids` (one causal forward, no cache)."""
    return forward(weights, config, ids, rope_layout, run=run)


def decode_incremental(weights: dict[str, torch.Tensor], config: LlamaConfig, ids,
                       rope_layout: str = "half") -> torch.Tensor:
    """The same logits as forward_logits, one token at a time through a KV cache (and recurrent states)."""
    dtype = weights["model.embed_tokens.weight"].dtype
    cache = KVCache(config, dtype)
    rows = [forward(weights, config, [token], rope_layout, cache)[0] for token in ids]
    return torch.stack(rows)


def argmax_lowest(row: torch.Tensor) -> int:
    """Index of the maximum of a 1-D tensor; ties go to the lowest index."""
    return int(torch.nonzero(row == row.max())[0, 0])


def greedy_decode(weights: dict[str, torch.Tensor], config: LlamaConfig, ids, steps: int,
                  rope_layout: str = "half", run: RunOptions | None = None) -> tuple[list[int], list[float]]:
    """`steps` greedy tokens continuing `ids` (full forward each step) and each step's top-2 margin."""
    tokens = list(ids)
    out, margins = [], []
    for _ in range(steps):
        row = forward_logits(weights, config, tokens, rope_layout, run)[-1]
        token = argmax_lowest(row)
        top2 = torch.topk(row.to(torch.float64), 2).values
        out.append(token)
        margins.append(float(top2[0] - top2[1]))
        tokens.append(token)
    return out, margins


# ----------------------------------------------------------------------------------------------
# Fixed q/k streams (rnd_emb_qk, fixed_seq_qk)


def random_stream(hidden: int, length: int, seed: int) -> torch.Tensor:
    """The rnd_emb_qk input: [length, hidden] N(0, 1) float32 drawn from torch.Generator().manual_seed(seed)."""
    return torch.randn((length, hidden), generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def token_stream(weights: dict[str, torch.Tensor], ids) -> torch.Tensor:
    """The fixed_seq_qk input: the embedding rows of the fixed token ids."""
    return weights["model.embed_tokens.weight"][torch.as_tensor(ids, dtype=torch.int64)]


def export_fixed_qk(weights: dict[str, torch.Tensor], config: LlamaConfig, stream: torch.Tensor,
                    rope_layout: str = "half") -> dict[str, torch.Tensor]:
    """fixed_q [L_max, heads*d] and fixed_k [L_max, kv_heads*d] of every rnd_emb_qk / fixed_seq_qk layer.

    The stream [L_max, hidden] is the network's input embedding at positions 0..L_max-1 (also the
    raw embedding static_emb_qk layers see); the whole network runs on it, other layers as usual,
    each fixed layer as causal softmax attention with its own q = x W_q, k = x W_k, v = x W_v and no
    RoPE, recording q and k (x = the layer's normed input on the stream).
    """
    record: dict[str, torch.Tensor] = {}
    positions = torch.arange(stream.shape[0], dtype=torch.int64)
    forward_hidden(weights, config, stream.to(weights["model.embed_tokens.weight"].dtype), positions,
                   rope_layout, None, RunOptions(fixed_stream=record))
    return record


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
    """Weights for rope_layout="interleaved" computing the same function as `weights` with "half".

    Every present q_proj (n_heads) and k_proj (kv_heads) is permuted; layers without RoPE
    (approximate, non_approximate) only use dot products of q and k, which the common per-head
    permutation leaves unchanged; fixed_q/fixed_k are used as stored and need nothing.
    """
    out = dict(weights)
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}.self_attn."
        if p + "q_proj.weight" in weights:
            out[p + "q_proj.weight"] = permute_half_to_interleaved(weights[p + "q_proj.weight"], config.num_attention_heads)
        if p + "k_proj.weight" in weights:
            out[p + "k_proj.weight"] = permute_half_to_interleaved(weights[p + "k_proj.weight"], config.num_key_value_heads)
    return out


def cast_weights(weights: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {name: tensor.to(dtype) for name, tensor in weights.items()}


def weights_from_numpy(arrays: dict) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array.copy()) for name, array in arrays.items()}


def load_checkpoint(folder: Path) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """config.json + model.safetensors of `folder`, tensors upcast to float32, names and shapes checked."""
    from safetensors_io import read_safetensors  # tools/ is on sys.path when run from there

    folder = Path(folder)
    config = LlamaConfig.load(folder / "config.json")
    arrays, _, _ = read_safetensors(folder / "model.safetensors")
    weights = weights_from_numpy(arrays)
    fixed = [name for name in weights if name.endswith("self_attn.fixed_q")]
    expected = dict(checkpoint_tensor_names(config, weights[fixed[0]].shape[0] if fixed else None))
    required = set(expected) - optional_tensor_names(config)
    if not required <= set(weights) <= set(expected):
        raise ValueError(f"{folder}: tensor names differ from the config's: "
                         f"missing {sorted(required - set(weights))}, extra {sorted(set(weights) - set(expected))}")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"{folder}: {name} has shape {tuple(tensor.shape)}, expected {expected[name]}")
    return config, weights
