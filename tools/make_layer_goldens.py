# SPDX-License-Identifier: MIT
"""Writes the attention-residual and token-mixer goldens in tests/data/layers/ (docs/layers.md).

Run from anywhere with Debian's interpreter (the one that has python3-torch):
    /usr/bin/python3 tools/make_layer_goldens.py              # writes tests/data/layers/, then checks it
    /usr/bin/python3 tools/make_layer_goldens.py --out DIR    # writes somewhere else
    /usr/bin/python3 tools/make_layer_goldens.py --find-seeds # first acceptable seed of every case, writes nothing

Every case folder holds config.json, model.safetensors (F32) and expected.json, laid out exactly
like the Llama goldens (tools/README.md); `block_gguf` holds model.gguf (block_bs2_l5's model in
llama.cpp's GGUF layout, q/k rows permuted for adjacent-pair RoPE, residual scores folded) and the
same expected.json as block_bs2_l5. Each case draws its tensors from one torch.Generator seeded
with the case's seed, in the order of pith_reference.checkpoint_tensor_names (fixed_q/fixed_k are
not drawn: they are computed by running the fixed stream), then the prompt from the same generator.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_layers  # noqa: E402
from gguf_io import LLAMA_GGUF_NAMES, LLAMA_GGUF_RES_SCORES, write_gguf  # noqa: E402
from make_llama_goldens import expected_json  # noqa: E402
from pith_reference import (FIXED_STREAM_MIXERS, LlamaConfig, cast_weights,  # noqa: E402
                            checkpoint_tensor_names, export_fixed_qk, forward_logits, greedy_decode,
                            optional_tensor_names, permute_half_to_interleaved, random_stream, token_stream)
from safetensors_io import write_safetensors  # noqa: E402

GREEDY_STEPS = 8
PROJECTION_STD = 0.2       # q/k/v/o, mlp and mixer_mlp gate/up/down
EMBEDDING_STD = 0.5        # embed_tokens and lm_head
NORM_STD = 0.1             # every norm weight (res_norm too) is 1 + NORM_STD * N(0, 1)
RES_PROJ_STD = 0.5         # res_proj: random, so the depth softmax is far from a plain average
FIXED_LENGTH = 32          # L_max of the fixed q/k streams, >= prompt + greedy tokens
MIN_GREEDY_MARGIN = 0.05
MIN_DISTINCT_GREEDY = 5
MAX_ABS_LOGIT = 20.0
# float32 vs float64 over prompt + greedy, relative to the largest |logit|: rules out seeds whose
# per-term denominators (approximate_norm "per_term") come close to zero
MAX_RELATIVE_FLOAT32_ERROR = 1e-5


@dataclass(frozen=True)
class Case:
    name: str
    config: LlamaConfig
    seed: int
    prompt_length: int
    covers: str
    stream_seed: int | None = None        # rnd_emb_qk: seed of the N(0, 1) input; fixed_seq_qk: of the token ids
    drop_fixed_qk_proj: bool = False      # write the checkpoint without the fixed layers' q_proj/k_proj
    omit_config_keys: tuple[str, ...] = ()


def llama(hidden, intermediate, layers, heads, kv_heads, vocab, tied, **extra) -> LlamaConfig:
    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
                         vocab_size=vocab, rms_norm_eps=extra.pop("rms_norm_eps", 1e-5),
                         rope_theta=extra.pop("rope_theta", 10000.0), tie_word_embeddings=tied,
                         max_position_embeddings=64, **extra)
    config.validate()
    return config


CASES = [
    Case("block_bs2_l5", llama(32, 48, 5, 4, 2, 67, False, attn_res_mode="block", attn_res_block_size=2),
         seed=2001, prompt_length=13,
         covers="block AttnRes, block size 2 with 5 layers (last block has one layer), GQA 4/2, untied"),
    Case("block_bs1_l3", llama(40, 56, 3, 4, 4, 59, True, attn_res_mode="block", attn_res_block_size=1, rms_norm_eps=1e-6),
         seed=2102, prompt_length=12, omit_config_keys=("attn_res_mode",),
         covers="block size 1 (a block per decoder layer); attn_res_mode absent, implied by attn_res_block_size; MHA, tied, eps 1e-6"),
    Case("full_l3", llama(36, 48, 3, 3, 1, 71, False, attn_res_mode="full", rope_theta=500000.0),
         seed=2202, prompt_length=14,
         covers="full AttnRes (2L+1 sources at the output site), multi-query 3/1, theta 5e5"),
    Case("mixer_mlp", llama(32, 48, 3, 4, 4, 53, True, token_mixers=("mlp",) * 3),
         seed=2302, prompt_length=11,
         covers="uniform mlp mixer (no token mixing), default mixer_mlp_intermediate_size 4*32/3 = 42, no q/k/v/o"),
    Case("mixer_approximate", llama(32, 48, 3, 4, 2, 61, False, token_mixers=("approximate",) * 3),
         seed=2401, prompt_length=15,
         covers="uniform approximate, defaults joint + elementwise (keys absent), GQA 4/2"),
    Case("mixer_approximate_outer_per_term",
         llama(32, 48, 2, 2, 2, 57, False, token_mixers=("approximate",) * 2, approximate_norm="per_term",
               approximate_order2="outer"),
         seed=2501, prompt_length=12,
         covers="approximate with approximate_norm per_term and approximate_order2 outer, head_dim 16"),
    Case("mixer_non_approximate", llama(40, 48, 3, 4, 2, 64, True, token_mixers=("non_approximate",) * 3),
         seed=2721, prompt_length=13,
         covers="uniform non_approximate (silu q, self-gated prefix softmax), GQA 4/2, head_dim 10, tied"),
    Case("mixer_rnd_emb_qk", llama(32, 48, 3, 4, 2, 73, False, token_mixers=("rnd_emb_qk",) * 3),
         seed=2701, prompt_length=16, stream_seed=2799,
         covers="uniform rnd_emb_qk: fixed_q/fixed_k [32, .] from a seeded N(0,1) stream; q/k_proj kept"),
    Case("mixer_fixed_seq_qk", llama(32, 40, 3, 2, 1, 79, True, token_mixers=("fixed_seq_qk",) * 3),
         seed=2806, prompt_length=14, stream_seed=2899, drop_fixed_qk_proj=True,
         covers="uniform fixed_seq_qk: stream of 32 seeded token ids; q/k_proj omitted from the checkpoint; MQA 2/1"),
    Case("mixer_static_emb_qk", llama(36, 48, 3, 3, 3, 83, False, token_mixers=("static_emb_qk",) * 3),
         seed=2902, prompt_length=12,
         covers="uniform static_emb_qk: q, k from the raw token embedding with RoPE, v from the normed stream"),
    Case("hybrid_even_non_approximate",
         llama(32, 48, 4, 4, 2, 89, False, token_mixers={"layout": "even", "variant": "non_approximate"}),
         seed=3003, prompt_length=10,
         covers='{"layout": "even", "variant": "non_approximate"}: layers 0, 2 non_approximate, 1, 3 standard'),
    Case("hybrid_block_static",
         llama(32, 48, 4, 4, 2, 67, True, attn_res_mode="block", attn_res_block_size=2,
               token_mixers=("standard", "static_emb_qk", "approximate", "mlp"), mixer_mlp_intermediate_size=40,
               approximate_order2="outer"),
         seed=3109, prompt_length=16,
         covers="block AttnRes (size 2, 4 layers) with a mixer list standard, static_emb_qk, approximate (joint, outer), mlp (m = 40)"),
]
GGUF_CASE = "block_gguf"
GGUF_SOURCE = "block_bs2_l5"


def draw_checkpoint(case: Case) -> tuple[dict[str, torch.Tensor], list[int]]:
    """float32 weights (without fixed_q/fixed_k) and the prompt, all from one generator seeded with case.seed."""
    generator = torch.Generator().manual_seed(case.seed)
    weights = {}
    for name, shape in checkpoint_tensor_names(case.config, FIXED_LENGTH):
        if name.endswith(("self_attn.fixed_q", "self_attn.fixed_k")):
            continue
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name.endswith("norm.weight"):
            weights[name] = 1.0 + NORM_STD * noise
        elif name.endswith("res_proj.weight"):
            weights[name] = RES_PROJ_STD * noise
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            weights[name] = EMBEDDING_STD * noise
        else:
            weights[name] = PROJECTION_STD * noise
    prompt = torch.randint(0, case.config.vocab_size, (case.prompt_length,), generator=generator).tolist()
    return weights, prompt


def fixed_stream(case: Case, weights: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, str]:
    """The fixed stream input [L_max, hidden] of the case (None without fixed layers) and its description."""
    mixers = {case.config.mixer(i) for i in range(case.config.num_hidden_layers)}
    if not mixers & set(FIXED_STREAM_MIXERS):
        return None, ""
    if mixers & set(FIXED_STREAM_MIXERS) == {"rnd_emb_qk"}:
        return (random_stream(case.config.hidden_size, FIXED_LENGTH, case.stream_seed),
                f"rnd_emb_qk: randn({FIXED_LENGTH}, {case.config.hidden_size}) from torch.Generator().manual_seed({case.stream_seed})")
    ids = torch.randint(0, case.config.vocab_size, (FIXED_LENGTH,),
                        generator=torch.Generator().manual_seed(case.stream_seed)).tolist()
    return token_stream(weights, ids), f"fixed_seq_qk: token ids {json.dumps(ids)}"


def build_case(case: Case) -> tuple[dict[str, torch.Tensor], list[int], str]:
    """The checkpoint's weights (fixed q/k exported, optional tensors dropped), prompt, stream description."""
    weights, prompt = draw_checkpoint(case)
    stream, description = fixed_stream(case, weights)
    if stream is not None:
        weights.update(export_fixed_qk(weights, case.config, stream))
    order = [name for name, _ in checkpoint_tensor_names(case.config, FIXED_LENGTH)]
    dropped = optional_tensor_names(case.config) if case.drop_fixed_qk_proj else set()
    return {name: weights[name] for name in order if name not in dropped}, prompt, description


def evaluate(case: Case, weights, prompt) -> dict:
    """Logits, greedy tokens and the numbers that decide whether the seed is acceptable."""
    logits = forward_logits(weights, case.config, prompt)
    greedy, margins = greedy_decode(weights, case.config, prompt, GREEDY_STEPS)
    sequence = prompt + greedy[:-1]
    full32 = forward_logits(weights, case.config, sequence)
    full64 = forward_logits(cast_weights(weights, torch.float64), case.config, sequence)
    scale = max(1.0, float(full32.abs().max()))
    return {"logits": logits, "greedy": greedy, "margins": margins,
            "max_abs_logit": float(full32.abs().max()),
            "float32_error": float((full32.double() - full64).abs().max()) / scale}


def problems(result: dict) -> list[str]:
    out = []
    if min(result["margins"]) < MIN_GREEDY_MARGIN:
        out.append(f"greedy margin {min(result['margins']):.3g} < {MIN_GREEDY_MARGIN}")
    if len(set(result["greedy"])) < MIN_DISTINCT_GREEDY:
        out.append(f"greedy {result['greedy']} has fewer than {MIN_DISTINCT_GREEDY} distinct tokens")
    if result["max_abs_logit"] > MAX_ABS_LOGIT:
        out.append(f"max |logit| {result['max_abs_logit']:.3g} > {MAX_ABS_LOGIT}")
    if result["float32_error"] > MAX_RELATIVE_FLOAT32_ERROR:
        out.append(f"float32 relative error {result['float32_error']:.2e} > {MAX_RELATIVE_FLOAT32_ERROR}")
    return out


def config_dict(case: Case) -> dict:
    d = case.config.to_hf_dict("float32")
    for key in case.omit_config_keys:
        d.pop(key)
    if LlamaConfig.from_dict(d) != case.config:
        raise AssertionError(f"{case.name}: config.json does not read back as the case's config")
    return d


def write_case(case: Case, root: Path) -> dict:
    weights, prompt, description = build_case(case)
    result = evaluate(case, weights, prompt)
    if problems(result):
        raise SystemExit(f"{case.name}: seed {case.seed}: {'; '.join(problems(result))}; choose another seed")
    folder = root / case.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config_dict(case), indent=2) + "\n")
    metadata = {"format": "pt", "generator": f"pith tools/make_layer_goldens.py seed {case.seed}"}
    if description:
        metadata["fixed_stream"] = description
    write_safetensors(folder / "model.safetensors", {n: t.numpy() for n, t in weights.items()}, "F32", metadata)
    (folder / "expected.json").write_text(expected_json(prompt, result["logits"].numpy(), result["greedy"]))
    print(f"{case.name}: {len(prompt)} prompt tokens, max |logit| {result['max_abs_logit']:.4f}, greedy {result['greedy']}, "
          f"smallest greedy margin {min(result['margins']):.4f}")
    return {"weights": weights, "prompt": prompt}


def gguf_metadata(config: LlamaConfig) -> list[tuple[str, str, object]]:
    c = config
    return [
        ("general.architecture", "string", "llama"),
        ("general.alignment", "uint32", 32),
        ("llama.context_length", "uint32", c.max_position_embeddings),
        ("llama.embedding_length", "uint32", c.hidden_size),
        ("llama.feed_forward_length", "uint32", c.intermediate_size),
        ("llama.block_count", "uint32", c.num_hidden_layers),
        ("llama.attention.head_count", "uint32", c.num_attention_heads),
        ("llama.attention.head_count_kv", "uint32", c.num_key_value_heads),
        ("llama.attention.layer_norm_rms_epsilon", "float32", c.rms_norm_eps),
        ("llama.rope.freq_base", "float32", c.rope_theta),
        ("llama.vocab_size", "uint32", c.vocab_size),
        ("llama.attn_res_block_size", "uint32", c.attn_res_block_size),
    ]


def gguf_tensors(weights: dict[str, torch.Tensor], config: LlamaConfig) -> dict[str, np.ndarray]:
    """llama.cpp's tensor names and order; q/k rows permuted half -> interleaved per head; scores folded."""
    c = config
    out = {}

    def put(hf_pattern: str, layer: int | None = None):
        hf = hf_pattern.replace("{i}", str(layer))
        tensor = weights[hf]
        if hf.endswith("self_attn.q_proj.weight"):
            tensor = permute_half_to_interleaved(tensor, c.num_attention_heads)
        elif hf.endswith("self_attn.k_proj.weight"):
            tensor = permute_half_to_interleaved(tensor, c.num_key_value_heads)
        out[LLAMA_GGUF_NAMES[hf_pattern].replace("{i}", str(layer))] = tensor.numpy()

    def put_score(gguf_pattern: str, layer: int | None = None):
        norm, proj = (name.replace("{i}", str(layer)) for name in LLAMA_GGUF_RES_SCORES[gguf_pattern])
        out[gguf_pattern.replace("{i}", str(layer))] = (weights[norm] * weights[proj][0]).numpy()

    put("model.embed_tokens.weight")
    for i in range(c.num_hidden_layers):
        for pattern in LLAMA_GGUF_NAMES:
            if pattern.startswith("model.layers."):
                put(pattern, i)
        put_score("blk.{i}.attn_res_score.weight", i)
        put_score("blk.{i}.ffn_res_score.weight", i)
    put_score("output_res_score.weight")
    put("model.norm.weight")
    if not c.tie_word_embeddings:
        put("lm_head.weight")
    return out


def write_gguf_case(source: Case, weights: dict[str, torch.Tensor], root: Path) -> None:
    folder = root / GGUF_CASE
    folder.mkdir(parents=True, exist_ok=True)
    write_gguf(folder / "model.gguf", gguf_metadata(source.config), gguf_tensors(weights, source.config))
    (folder / "expected.json").write_bytes((root / source.name / "expected.json").read_bytes())
    print(f"{GGUF_CASE}: {source.name}'s model as GGUF v3 (F32, q/k permuted for adjacent-pair RoPE, folded residual scores)")


def find_seed(case: Case, tries: int = 200) -> None:
    for seed in range(case.seed, case.seed + tries):
        trial = replace(case, seed=seed)
        result = evaluate(trial, *build_case(trial)[:2])
        issues = problems(result)
        if not issues:
            print(f"{case.name}: seed {seed} (max |logit| {result['max_abs_logit']:.2f}, margin {min(result['margins']):.3f}, "
                  f"float32 error {result['float32_error']:.1e})")
            return
        print(f"  {case.name} seed {seed}: {'; '.join(issues)}")
    print(f"{case.name}: no acceptable seed in [{case.seed}, {case.seed + tries})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "data" / "layers")
    parser.add_argument("--find-seeds", action="store_true", help="print the first acceptable seed of every case")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one summation order for BLAS
    if args.find_seeds:
        for case in CASES:
            find_seed(case)
        return 0
    written = {case.name: write_case(case, args.out) for case in CASES}
    source = next(case for case in CASES if case.name == GGUF_SOURCE)
    write_gguf_case(source, written[GGUF_SOURCE]["weights"], args.out)
    return check_layers.main([str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
