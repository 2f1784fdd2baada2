# SPDX-License-Identifier: MIT
"""Self-check of the attention-residual / token-mixer reference and of tests/data/layers; exits non-zero on failure.

    /usr/bin/python3 tools/check_layers.py [tests/data/layers]

Reference-only checks (no files):
1. hybrid layouts resolve to DA Table 11 (24 layers, 1-indexed standard layers) and bad
   token_mixers values are rejected;
2. approximate (all four approximate_norm x approximate_order2 options) and non_approximate: the
   recurrent state form equals the parallel form, within 1e-5 relative in float32 and 1e-12 in float64;
3. non_approximate is invariant to applying the same RoPE to q and k.
For every case folder (one with config.json and expected.json):
4. config.json reads back, and the checkpoint has exactly the tensors docs/layers.md names;
5. the reference reproduces expected.json (logits within GOLDEN_TOLERANCE, greedy exactly);
6. a token-by-token float64 numpy implementation written from docs/layers.md (residual sources
   rebuilt from the per-block sums of sub-layer outputs, explicit sums over positions, complex RoPE;
   no code shared with pith_reference.py except the layout resolution of check 1) agrees with the
   reference in float64 within INDEPENDENT_TOLERANCE; float32 stays close to float64;
7. decoding one token at a time (KV caches and recurrent states) equals the full forward;
   RunOptions(mixer_form="recurrent") equals the parallel forms; interleaved RoPE with permuted q/k
   equals the half layout (float64 within FLOAT64_TOLERANCE, float32 within 1e-5 * max|logit|);
8. block mode: the two-phase computation (AR §4.2) equals the direct mix at every site (relative
   1e-6 in float32, 1e-13 in float64) and in the logits; block mode with block size >= L differs
   from the standard residual (the mix is active), and so does the case's own mode;
9. uniform mlp: the logits at position p do not depend on the earlier tokens;
10. fixed q/k layers: the stored rnd_emb_qk tables are reproduced from the stream named in the
    safetensors metadata; a position >= L_max is an error that names the layer and L_max;
11. block_gguf: the GGUF file reads back (header, metadata, F32 tensors, alignment) as exactly
    block_bs2_l5's tensors (q/k permuted half -> interleaved, scores = norm ⊙ proj in float32),
    expected.json is block_bs2_l5's, and the reference run on the GGUF weights with interleaved
    RoPE reproduces it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_io import LLAMA_GGUF_NAMES, LLAMA_GGUF_RES_SCORES, read_gguf  # noqa: E402
from pith_reference import (FIXED_STREAM_MIXERS, ApproximateState, LlamaConfig, NonApproximateState,  # noqa: E402
                            RunOptions, apply_rope, approximate_attention, cast_weights, checkpoint_tensor_names,
                            decode_incremental, export_fixed_qk, forward_logits, greedy_decode, load_checkpoint,
                            non_approximate_attention, optional_tensor_names, permute_half_to_interleaved,
                            permute_interleaved_to_half, random_stream, resolve_token_mixers, rms_norm, token_stream,
                            weights_half_to_interleaved)
from safetensors_io import read_safetensors  # noqa: E402

GOLDEN_TOLERANCE = 1e-5             # same code, same weights
FLOAT64_TOLERANCE = 1e-11           # equivalent computations in float64
RELATIVE_FLOAT32_TOLERANCE = 1e-5   # equivalent computations in float32, relative to max |logit| (or |output|)
INDEPENDENT_TOLERANCE = 1e-9        # two float64 implementations of the same maths
FLOAT32_TOLERANCE = 1e-3            # float32 vs float64 reference
MIXER_FLOAT64_TOLERANCE = 1e-12     # recurrent vs parallel mixer forms, relative, float64
SITE_FLOAT32_TOLERANCE = 1e-6       # two-phase vs direct mix at one site, relative, float32
SITE_FLOAT64_TOLERANCE = 1e-13
ACTIVE_MIN_DIFFERENCE = 1e-2        # "not equal" means at least this far apart in the logits
BASE_CONFIG_KEYS = {"architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size", "rms_norm_eps",
                    "rope_theta", "tie_word_embeddings", "max_position_embeddings", "torch_dtype"}
EXTENSION_CONFIG_KEYS = {"attn_res_mode", "attn_res_block_size", "token_mixers", "mixer_mlp_intermediate_size",
                         "approximate_norm", "approximate_order2"}
GGUF_CASE, GGUF_SOURCE = "block_gguf", "block_bs2_l5"

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    print(("  ok    " if condition else "  FAIL  ") + message)
    if not condition:
        failures.append(message)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / max(1.0, float(b.abs().max())))


# ----------------------------------------------------------------------------------------------
# Reference-only checks


def check_layouts() -> None:
    print("hybrid layouts (DA Table 11, 24 layers, 1-indexed standard layers)")
    table = {
        "even": set(range(2, 25, 2)), "odd": set(range(1, 24, 2)), "top": set(range(1, 13)),
        "middle": set(range(1, 7)) | set(range(19, 25)), "bottom": set(range(13, 25)), "quarter": {4, 8, 12, 16, 20, 24},
        "first": {1}, "last": {24}, "first_last": {1, 24},
    }
    for layout, standard in table.items():
        names = resolve_token_mixers({"layout": layout, "variant": "mlp"}, 24)
        got = {i + 1 for i, name in enumerate(names) if name == "standard"}
        check(got == standard and all(n == "mlp" for i, n in enumerate(names) if i + 1 not in standard),
              f"{layout}: standard layers {sorted(got)}")
    check(resolve_token_mixers({"layout": "even", "variant": "approximate"}, 5)
          == ["approximate", "standard", "approximate", "standard", "approximate"], "even with 5 layers")
    check(resolve_token_mixers({"layout": "middle", "variant": "mlp"}, 6)
          == ["standard", "mlp", "mlp", "mlp", "mlp", "standard"], "middle with 6 layers (L/4 = 1)")
    check(resolve_token_mixers(None, 3) == ["standard"] * 3, "absent: every layer standard")
    for bad in (["standard"], ["attention", "standard"], {"layout": "sides", "variant": "mlp"},
                {"layout": "even", "variant": "softmax"}, {"layout": "even"}):
        try:
            resolve_token_mixers(bad, 2)
            check(False, f"token_mixers {bad!r} rejected")
        except ValueError as error:
            check(True, f"token_mixers {json.dumps(bad)} rejected: {error}")


def random_qkv(seed: int, n: int, heads: int, kv_heads: int, d: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(seed)
    draw = lambda h: torch.randn((n, h, d), generator=generator, dtype=torch.float64).to(dtype)
    return draw(heads), draw(kv_heads), draw(kv_heads)


def run_recurrent(state, q, k, v) -> torch.Tensor:
    return torch.stack([state.step(q[t], k[t], v[t]) for t in range(q.shape[0])])


def check_mixer_forms() -> None:
    print("recurrent (state) form == parallel form")
    n = 24
    positions = torch.arange(n)
    for dtype, bound, label in ((torch.float32, RELATIVE_FLOAT32_TOLERANCE, "float32"),
                                (torch.float64, MIXER_FLOAT64_TOLERANCE, "float64")):
        for norm in ("joint", "per_term"):
            for order2 in ("elementwise", "outer"):
                for heads, kv_heads, d in ((4, 2, 8), (2, 2, 16)):
                    q, k, v = random_qkv(11, n, heads, kv_heads, d, dtype)
                    if norm == "per_term":  # keep the first-order denominators away from 0 (well conditioned)
                        q = q + 1.5
                        k = k + 1.5
                    parallel = approximate_attention(q, k, v, positions, norm, order2)
                    recurrent = run_recurrent(ApproximateState(kv_heads, d, norm, order2, dtype), q, k, v)
                    difference = relative(recurrent, parallel)
                    check(difference <= bound, f"{label} approximate {norm}/{order2} heads {heads}/{kv_heads} d {d}: "
                                               f"relative diff {difference:.1e}")
            q, k, v = random_qkv(12, n, 4, 2, 8, dtype)
            q = torch.nn.functional.silu(3 * q)  # scores of several units: the running max matters
            parallel = non_approximate_attention(q, k, v, positions)
            recurrent = run_recurrent(NonApproximateState(4, 8, dtype), q, k, v)
            difference = relative(recurrent, parallel)
            check(difference <= bound, f"{label} non_approximate heads 4/2 d 8: relative diff {difference:.1e}")

    print("non_approximate ignores a common RoPE of q and k")
    q, k, v = random_qkv(13, n, 4, 2, 8, torch.float64)
    q = torch.nn.functional.silu(2 * q)
    plain = non_approximate_attention(q, k, v, positions)
    for layout in ("half", "interleaved"):
        rotated = non_approximate_attention(apply_rope(q, positions + 50, 10000.0, layout),
                                            apply_rope(k, positions + 50, 10000.0, layout), v, positions)
        check(relative(rotated, plain) <= MIXER_FLOAT64_TOLERANCE, f"{layout} RoPE: diff {relative(rotated, plain):.1e}")


# ----------------------------------------------------------------------------------------------
# Independent float64 implementation, token by token


def independent_logits(arrays: dict[str, np.ndarray], c: dict, ids: list[int]) -> np.ndarray:
    """Float64 logits at every position, one token at a time, written from docs/layers.md."""
    heads, d, eps, theta, L = c["num_attention_heads"], c["head_dim"], c["rms_norm_eps"], c["rope_theta"], c["num_hidden_layers"]
    half, group = d // 2, heads // c["num_key_value_heads"]
    mode = c.get("attn_res_mode") or ("block" if c.get("attn_res_block_size") is not None else "standard")
    mixers = resolve_token_mixers(c.get("token_mixers"), L)
    approx_norm, order2 = c.get("approximate_norm", "joint"), c.get("approximate_order2", "elementwise")
    W = {name: a.astype(np.float64) for name, a in arrays.items()}
    P = lambda i, name: W[f"model.layers.{i}.{name}"]

    def norm(x, w):
        return x / math.sqrt(np.mean(x * x) + eps) * w

    def rotate(vec, pos):  # each head: pair (j, j + d/2) is the complex number vec[j] + i vec[j + d/2]
        out = []
        for h in range(len(vec) // d):
            part = vec[h * d:(h + 1) * d]
            z = (part[:half] + 1j * part[half:]) * np.exp(1j * pos * theta ** (-2.0 * np.arange(half) / d))
            out.append(np.concatenate((z.real, z.imag)))
        return np.concatenate(out)

    def silu(z):
        return z / (1.0 + np.exp(-z))

    def softmax_attention(q, keys, values):  # q [heads*d], keys/values lists of [kv*d]
        out = np.zeros(heads * d)
        for h in range(heads):
            g = h // group
            scores = np.array([q[h * d:(h + 1) * d] @ key[g * d:(g + 1) * d] / math.sqrt(d) for key in keys])
            p = np.exp(scores - scores.max())
            p /= p.sum()
            out[h * d:(h + 1) * d] = sum(p[j] * values[j][g * d:(g + 1) * d] for j in range(len(keys)))
        return out

    def approximate(q, keys, values):
        out = np.zeros(heads * d)
        for h in range(heads):
            g = h // group
            qh = q[h * d:(h + 1) * d]
            ks = [key[g * d:(g + 1) * d] for key in keys]
            vs = [value[g * d:(g + 1) * d] for value in values]
            first = np.array([qh @ kh / math.sqrt(d) for kh in ks])
            if order2 == "outer":
                second = np.array([(qh @ kh) ** 2 / (2 * d) for kh in ks])
            else:
                second = np.array([(qh * qh) @ (kh * kh) / (2 * d) for kh in ks])
            weighted = lambda a: sum(a[j] * vs[j] for j in range(len(vs)))
            if approx_norm == "joint":
                a = 1.0 + first + second
                out[h * d:(h + 1) * d] = weighted(a) / (a.sum() + 1e-12)
            else:
                out[h * d:(h + 1) * d] = (sum(vs) / len(vs) + weighted(first) / (first.sum() + 1e-12)
                                          + weighted(second) / (second.sum() + 1e-12))
        return out

    def non_approximate(scores, values):  # scores: list of [heads] (s_j per head), values list of [kv*d]
        out = np.zeros(heads * d)
        for h in range(heads):
            g = h // group
            s = np.array([row[h] for row in scores])
            p = np.exp(s - s.max())
            out[h * d:(h + 1) * d] = sum(p[j] * values[j][g * d:(g + 1) * d] for j in range(len(values))) / p.sum()
        return out

    keys = [[] for _ in range(L)]
    values = [[] for _ in range(L)]
    gates = [[] for _ in range(L)]

    def token_mixer(i, x, e, t):
        mixer = mixers[i]
        xn = norm(x, P(i, "input_layernorm.weight"))
        if mixer == "mlp":
            g_ = P(i, "mixer_mlp.gate_proj.weight") @ xn
            return P(i, "mixer_mlp.down_proj.weight") @ (silu(g_) * (P(i, "mixer_mlp.up_proj.weight") @ xn))
        v = P(i, "self_attn.v_proj.weight") @ xn
        values[i].append(v)
        if mixer in ("standard", "static_emb_qk"):
            source = xn if mixer == "standard" else e
            q = rotate(P(i, "self_attn.q_proj.weight") @ source, t)
            keys[i].append(rotate(P(i, "self_attn.k_proj.weight") @ source, t))
            out = softmax_attention(q, keys[i], values[i])
        elif mixer in FIXED_STREAM_MIXERS:
            q = P(i, "self_attn.fixed_q")[t]
            keys[i].append(P(i, "self_attn.fixed_k")[t])
            out = softmax_attention(q, keys[i], values[i])
        elif mixer == "approximate":
            q = P(i, "self_attn.q_proj.weight") @ xn
            keys[i].append(P(i, "self_attn.k_proj.weight") @ xn)
            out = approximate(q, keys[i], values[i])
        else:  # non_approximate: s_t per head from the same position's q and k
            q = silu(P(i, "self_attn.q_proj.weight") @ xn)
            k = P(i, "self_attn.k_proj.weight") @ xn
            gates[i].append(np.array([q[h * d:(h + 1) * d] @ k[(h // group) * d:(h // group + 1) * d] / math.sqrt(d)
                                      for h in range(heads)]))
            out = non_approximate(gates[i], values[i])
        return P(i, "self_attn.o_proj.weight") @ out

    def ffn(i, y):
        yn = norm(y, P(i, "post_attention_layernorm.weight"))
        return P(i, "mlp.down_proj.weight") @ (silu(P(i, "mlp.gate_proj.weight") @ yn) * (P(i, "mlp.up_proj.weight") @ yn))

    def query(site):
        return W[site + "_res_norm.weight"] * W[site + "_res_proj.weight"][0]

    def depth_mix(q, sources):
        s = np.array([v @ q / math.sqrt(np.mean(v * v) + eps) for v in sources])
        p = np.exp(s - s.max())
        p /= p.sum()
        return sum(p[j] * sources[j] for j in range(len(sources)))

    def sources_for(e, outputs, layer_of_next):
        """Block mode: the embedding, the sum of every completed block, the current block's partial sum.

        outputs: (decoder layer, sub-layer output) so far; block b >= 1 holds layers [(b-1)*bs, b*bs);
        layer_of_next: the decoder layer of the site being computed (L for the output site)."""
        bs = c["attn_res_block_size"]
        current = min(layer_of_next, L - 1) // bs + 1
        blocks = [e] + [sum(o for layer, o in outputs if layer // bs + 1 == b) for b in range(1, current)]
        partial = [o for layer, o in outputs if layer // bs + 1 == current]
        return blocks + ([sum(partial)] if partial else [])

    head = W["model.embed_tokens.weight"] if c["tie_word_embeddings"] else W["lm_head.weight"]
    rows = []
    for t, token in enumerate(ids):
        e = W["model.embed_tokens.weight"][token]
        if mode == "standard":
            h = e.copy()
            for i in range(L):
                h = h + token_mixer(i, h, e, t)
                h = h + ffn(i, h)
            z = h
        elif mode == "full":
            sources = [e]
            for i in range(L):
                sources.append(token_mixer(i, depth_mix(query(f"model.layers.{i}.self_attention"), sources), e, t))
                sources.append(ffn(i, depth_mix(query(f"model.layers.{i}.mlp"), sources)))
            z = depth_mix(query("model.output_attn"), sources)
        else:
            outputs = []
            for i in range(L):
                x = depth_mix(query(f"model.layers.{i}.self_attention"), sources_for(e, outputs, i))
                outputs.append((i, token_mixer(i, x, e, t)))
                y = depth_mix(query(f"model.layers.{i}.mlp"), sources_for(e, outputs, i))
                outputs.append((i, ffn(i, y)))
            z = depth_mix(query("model.output_attn"), sources_for(e, outputs, L))
        rows.append(head @ norm(z, W["model.norm.weight"]))
    return np.array(rows)


# ----------------------------------------------------------------------------------------------
# Case checks


def mixers_of(config: LlamaConfig) -> set[str]:
    return {config.mixer(i) for i in range(config.num_hidden_layers)}


def check_equivalences(config, weights, ids, logits, logits64) -> dict:
    """Incremental decode, recurrent mixer forms, interleaved layout, two-phase block mix (float64 and float32)."""
    stats = {}
    float32_bound = RELATIVE_FLOAT32_TOLERANCE * max(1.0, float(logits.abs().max()))
    weights64 = cast_weights(weights, torch.float64)
    recurrent = mixers_of(config) & {"approximate", "non_approximate"}
    for label, w, reference, bound in (("float64", weights64, logits64, FLOAT64_TOLERANCE),
                                       ("float32", weights, logits, float32_bound)):
        difference = float((decode_incremental(w, config, ids) - reference).abs().max())
        check(difference <= bound, f"{label}: token-by-token decode (caches, states) == full sequence, "
                                   f"max diff {difference:.2e} (bound {bound:.1e})")
        stats[f"incremental_{label}"] = difference
        if recurrent:
            difference = float((forward_logits(w, config, ids, run=RunOptions(mixer_form="recurrent")) - reference).abs().max())
            check(difference <= bound, f"{label}: recurrent forms of {sorted(recurrent)} == parallel forms, max diff {difference:.2e}")
        permuted = weights_half_to_interleaved(w, config)
        difference = float((forward_logits(permuted, config, ids, rope_layout="interleaved") - reference).abs().max())
        check(difference <= bound, f"{label}: interleaved RoPE on permuted q/k == half RoPE, max diff {difference:.2e}")
        stats[f"layout_{label}"] = difference
        if config.attn_res_mode == "block":
            sites: list[float] = []
            two_phase = forward_logits(w, config, ids, run=RunOptions(block_path="two_phase", site_check=sites))
            site_bound = SITE_FLOAT64_TOLERANCE if label == "float64" else SITE_FLOAT32_TOLERANCE
            check(max(sites) <= site_bound, f"{label}: two-phase block mix == direct mix at all {len(sites)} sites "
                                            f"(x {len(ids)} tokens), largest relative diff {max(sites):.1e} (bound {site_bound:.0e})")
            difference = float((two_phase - reference).abs().max())
            check(difference <= bound, f"{label}: two-phase block path logits == direct, max diff {difference:.2e}")
            stats[f"two_phase_{label}"] = max(sites)
    return stats


def check_residual_active(config, weights, ids, logits) -> None:
    L = config.num_hidden_layers
    standard = forward_logits(weights, replace(config, attn_res_mode="standard"), ids)
    whole = forward_logits(weights, replace(config, attn_res_mode="block", attn_res_block_size=L), ids)
    difference = float((whole - standard).abs().max())
    check(difference > ACTIVE_MIN_DIFFERENCE, f"block size {L} >= L differs from the standard residual by {difference:.2f}")
    difference = float((logits - standard).abs().max())
    check(difference > ACTIVE_MIN_DIFFERENCE, f"{config.attn_res_mode} mode differs from the standard residual by {difference:.2f}")


def check_context_free(config, weights, ids, logits) -> None:
    alone = torch.stack([forward_logits(weights, config, [token])[0] for token in ids])
    difference = float((alone - logits).abs().max())
    check(difference <= RELATIVE_FLOAT32_TOLERANCE * float(logits.abs().max()),
          f"uniform mlp: logits at p from ids[p] alone == with the prefix, max diff {difference:.1e}")
    swapped = forward_logits(weights, config, list(reversed(ids)))
    difference = float((swapped.flip(0) - logits).abs().max())
    check(difference <= RELATIVE_FLOAT32_TOLERANCE * float(logits.abs().max()),
          f"uniform mlp: reversing the prompt reverses the logit rows, max diff {difference:.1e}")


def check_non_approximate_rope(config, weights, ids) -> None:
    """Layer-0-style activations of every non_approximate layer: the same RoPE on q and k changes nothing."""
    w = cast_weights(weights, torch.float64)
    e = w["model.embed_tokens.weight"][torch.tensor(ids)]
    positions = torch.arange(len(ids))
    for i in range(config.num_hidden_layers):
        if config.mixer(i) != "non_approximate":
            continue
        p, d = f"model.layers.{i}.", config.head_dim
        x = rms_norm(e, w[p + "input_layernorm.weight"], config.rms_norm_eps)
        heads = lambda name: (x @ w[p + name].T).view(len(ids), -1, d)
        q, k, v = torch.nn.functional.silu(heads("self_attn.q_proj.weight")), heads("self_attn.k_proj.weight"), heads("self_attn.v_proj.weight")
        plain = non_approximate_attention(q, k, v, positions)
        rotated = non_approximate_attention(apply_rope(q, positions, config.rope_theta), apply_rope(k, positions, config.rope_theta), v, positions)
        check(relative(rotated, plain) <= MIXER_FLOAT64_TOLERANCE,
              f"layer {i} non_approximate with the same RoPE on q and k: diff {relative(rotated, plain):.1e}")


def check_fixed_stream(folder: Path, config, weights, metadata: dict) -> None:
    fixed_layers = [i for i in range(config.num_hidden_layers) if config.mixer(i) in FIXED_STREAM_MIXERS]
    l_max = weights[f"model.layers.{fixed_layers[0]}.self_attn.fixed_q"].shape[0]
    description = metadata.get("fixed_stream", "")
    check(bool(description), f"safetensors metadata names the fixed stream: {description[:70]}...")
    have_proj = all(f"model.layers.{i}.self_attn.q_proj.weight" in weights for i in fixed_layers)
    if have_proj and description.startswith("rnd_emb_qk"):
        seed = int(description.split("manual_seed(")[1].split(")")[0])
        stream = random_stream(config.hidden_size, l_max, seed)
    elif have_proj and description.startswith("fixed_seq_qk"):
        stream = token_stream(weights, json.loads(description.split("token ids ")[1]))
    else:
        stream = None
        print(f"        q_proj/k_proj are not in the checkpoint (optional for {sorted(mixers_of(config) & set(FIXED_STREAM_MIXERS))}): "
              "the stream cannot be re-run from the file")
    if stream is not None:
        exported = export_fixed_qk(weights, config, stream)
        difference = max(float((exported[name] - weights[name]).abs().max()) for name in exported)
        check(difference <= 1e-6, f"fixed_q/fixed_k re-exported from the stream, max diff {difference:.1e}")
    try:
        forward_logits(weights, config, [0] * (l_max + 1))
        check(False, f"position {l_max} (>= L_max) is rejected")
    except ValueError as error:
        check(f"layer {fixed_layers[0]}" in str(error) and f"L_max = {l_max}" in str(error),
              f"position {l_max} rejected: {error}")


def check_case(folder: Path) -> dict:
    print(folder.name)
    stats = {}
    config_dict = json.loads((folder / "config.json").read_text())
    keys = set(config_dict)
    check(BASE_CONFIG_KEYS <= keys <= BASE_CONFIG_KEYS | EXTENSION_CONFIG_KEYS,
          f"config.json keys: Llama keys + {sorted(keys - BASE_CONFIG_KEYS)}")
    config, weights = load_checkpoint(folder)  # raises on a missing, extra or misshapen tensor
    arrays, dtypes, metadata = read_safetensors(folder / "model.safetensors")
    fixed = next((a.shape[0] for n, a in arrays.items() if n.endswith("fixed_q")), None)
    order = [name for name, _ in checkpoint_tensor_names(config, fixed) if name in arrays]
    omitted = sorted(optional_tensor_names(config) - set(arrays))
    check(list(arrays) == order, f"{len(arrays)} tensors in model order, dtype {set(dtypes.values())}"
                                 + (f", optional tensors omitted: {len(omitted)}" if omitted else ""))
    print(f"        mode {config.attn_res_mode}" + (f" (block size {config.attn_res_block_size})" if config.attn_res_mode == "block" else "")
          + f", mixers {[config.mixer(i) for i in range(config.num_hidden_layers)]}")

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
    stats["margin"] = min(margins)

    logits64 = forward_logits(cast_weights(weights, torch.float64), config, ids)
    naive = independent_logits(arrays, config_dict, ids)
    difference = float(np.abs(logits64.numpy() - naive).max())
    check(difference <= INDEPENDENT_TOLERANCE, f"independent token-by-token float64 implementation agrees, max diff {difference:.2e}")
    difference = float((logits.double() - logits64).abs().max())
    check(difference <= FLOAT32_TOLERANCE, f"float32 vs float64 reference, max diff {difference:.2e}")
    stats["float32_error"] = difference

    stats.update(check_equivalences(config, weights, ids, logits, logits64))
    if config.attn_res_mode != "standard":
        check_residual_active(config, weights, ids, logits)
    if mixers_of(config) == {"mlp"}:
        check_context_free(config, weights, ids, logits)
    if "non_approximate" in mixers_of(config):
        check_non_approximate_rope(config, weights, ids)
    if mixers_of(config) & set(FIXED_STREAM_MIXERS):
        check_fixed_stream(folder, config, weights, metadata)
    stats["max_abs_logit"] = float(np.abs(golden).max())
    return stats


def weights_from_gguf(tensors: dict[str, np.ndarray], num_layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face names for a GGUF's tensors, q/k left in the file's (interleaved) row order; each folded
    score becomes res_norm = score, res_proj = ones (so q_eff = score exactly)."""
    inverse = {}
    for hf, gg in LLAMA_GGUF_NAMES.items():
        for i in range(num_layers) if "{i}" in hf else [None]:
            inverse[gg.replace("{i}", str(i))] = hf.replace("{i}", str(i))
    out = {}
    for name, array in tensors.items():
        tensor = torch.from_numpy(array.copy())
        if name in inverse:
            out[inverse[name]] = tensor
            continue
        pattern = "output_res_score.weight" if name == "output_res_score.weight" else \
            "blk.{i}." + name.split(".", 2)[2]
        layer = None if name == "output_res_score.weight" else name.split(".")[1]
        norm, proj = (n.replace("{i}", str(layer)) for n in LLAMA_GGUF_RES_SCORES[pattern])
        out[norm], out[proj] = tensor, torch.ones((1, tensor.shape[0]))
    return out


def check_gguf(folder: Path, source: Path) -> dict:
    print(folder.name)
    config, weights = load_checkpoint(source)
    metadata, tensors, infos, alignment = read_gguf(folder / "model.gguf")
    data = (folder / "model.gguf").read_bytes()
    check(data[:4] == b"GGUF" and int.from_bytes(data[4:8], "little") == 3, "magic GGUF, version 3")
    c = config
    expected_metadata = {
        "general.architecture": ("string", "llama"), "general.alignment": ("uint32", 32),
        "llama.context_length": ("uint32", c.max_position_embeddings), "llama.embedding_length": ("uint32", c.hidden_size),
        "llama.feed_forward_length": ("uint32", c.intermediate_size), "llama.block_count": ("uint32", c.num_hidden_layers),
        "llama.attention.head_count": ("uint32", c.num_attention_heads),
        "llama.attention.head_count_kv": ("uint32", c.num_key_value_heads),
        "llama.attention.layer_norm_rms_epsilon": ("float32", float(np.float32(c.rms_norm_eps))),
        "llama.rope.freq_base": ("float32", float(np.float32(c.rope_theta))), "llama.vocab_size": ("uint32", c.vocab_size),
        "llama.attn_res_block_size": ("uint32", c.attn_res_block_size),
    }
    check(metadata == expected_metadata, f"{len(metadata)} metadata keys with their types and values")
    check(all(offset % alignment == 0 for _, _, _, offset in infos) and all(t == 0 for _, _, t, _ in infos),
          f"{len(infos)} F32 tensors at offsets aligned to {alignment}")
    check(all(ne == list(reversed(tensors[name].shape)) for name, ne, _, _ in infos),
          "ne listed fastest-varying first (ne[0] = row length)")
    # round trip: every tensor is the safetensors model's, permuted or folded as llama.cpp does
    back = weights_from_gguf(tensors, c.num_hidden_layers)
    exact = True
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}.self_attn."
        exact &= torch.equal(back[p + "q_proj.weight"], permute_half_to_interleaved(weights[p + "q_proj.weight"], c.num_attention_heads))
        exact &= torch.equal(back[p + "k_proj.weight"], permute_half_to_interleaved(weights[p + "k_proj.weight"], c.num_key_value_heads))
    for name in back:
        if name.endswith("res_norm.weight"):
            site = name[:-len("_res_norm.weight")]
            exact &= torch.equal(back[name], weights[name] * weights[site + "_res_proj.weight"][0])
        elif not name.endswith(("res_proj.weight", "q_proj.weight", "k_proj.weight")):
            exact &= torch.equal(back[name], weights[name])
    names = set(weights) - {n for n in weights if "res_" in n}
    check(exact and names == {n for n in back if "res_" not in n},
          f"round trip: {len(tensors)} tensors equal {source.name}'s (q/k permuted, scores = norm * proj in float32)")
    check((folder / "expected.json").read_bytes() == (source / "expected.json").read_bytes(),
          f"expected.json is {source.name}'s")

    expected = json.loads((folder / "expected.json").read_text())
    golden = torch.tensor(expected["logits"], dtype=torch.float32)
    ids = expected["ids"]
    logits = forward_logits(back, config, ids, rope_layout="interleaved")
    bound = RELATIVE_FLOAT32_TOLERANCE * float(golden.abs().max())
    difference = float((logits - golden).abs().max())
    check(difference <= bound, f"reference on the GGUF weights, interleaved RoPE, reproduces expected, max diff {difference:.1e}")
    greedy, margins = greedy_decode(back, config, ids, len(expected["greedy"]), rope_layout="interleaved")
    check(greedy == expected["greedy"], f"greedy {greedy} with interleaved RoPE, smallest margin {min(margins):.4f}")
    heads_of = lambda n: c.num_attention_heads if n.endswith("q_proj.weight") else c.num_key_value_heads
    unpermuted = {n: permute_interleaved_to_half(t, heads_of(n)) if n.endswith(("q_proj.weight", "k_proj.weight")) else t
                  for n, t in back.items()}
    difference = float((forward_logits(unpermuted, config, ids) - golden).abs().max())
    check(difference <= GOLDEN_TOLERANCE, f"q/k permuted back + half RoPE: max diff {difference:.1e}")
    difference = float((forward_logits(back, config, ids) - golden).abs().max())
    check(difference > ACTIVE_MIN_DIFFERENCE, f"the GGUF q/k with half RoPE (no permutation) differ by {difference:.2f}")
    logits64 = forward_logits(cast_weights(back, torch.float64), config, ids, rope_layout="interleaved")
    reference64 = forward_logits(cast_weights(weights, torch.float64), config, ids)
    difference = float((logits64 - reference64).abs().max())
    check(difference <= 1e-5, f"float64: GGUF (folded float32 scores) vs safetensors model, max diff {difference:.1e}")
    return {"max_abs_logit": float(golden.abs().max()), "margin": min(margins)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "tests" / "data" / "layers"
    torch.set_num_threads(1)
    check_layouts()
    check_mixer_forms()
    summary = {}
    for folder in sorted(root.iterdir()):
        if (folder / "config.json").is_file() and (folder / "expected.json").is_file():
            summary[folder.name] = check_case(folder)
    if (root / GGUF_CASE).is_dir():
        summary[GGUF_CASE] = check_gguf(root / GGUF_CASE, root / GGUF_SOURCE)
    print("summary")
    for name, stats in summary.items():
        line = f"  {name:34s} max |logit| {stats['max_abs_logit']:7.4f}   smallest greedy margin {stats['margin']:.4f}"
        if "float32_error" in stats:
            line += (f"   f32-f64 {stats['float32_error']:.1e}   incremental {stats['incremental_float64']:.0e} (f64) "
                     f"{stats['incremental_float32']:.1e} (f32)")
        if "two_phase_float32" in stats:
            line += f"   two-phase sites {stats['two_phase_float32']:.1e} (f32)"
        print(line)
    if not summary:
        failures.append(f"no case folders in {root}")
    print(f"{len(failures)} failure(s)" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
