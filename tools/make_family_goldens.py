# SPDX-License-Identifier: MIT
"""Writes the model-family goldens in tests/data/families/: tiny random checkpoints of Llama 3,
Qwen2, Qwen3, Mistral and Gemma 3, as Hugging Face safetensors and (where llama.cpp has the
architecture) as the GGUF file llama.cpp's converter would make of them, with expected logits.

    /usr/bin/python3 tools/make_family_goldens.py            # writes tests/data/families/
    /usr/bin/python3 tools/make_family_goldens.py --out DIR
    /usr/bin/python3 tools/make_family_goldens.py --check  # re-checks the committed files only

Every case folder holds
    config.json        the family's Hugging Face keys (architectures, rope_scaling, sliding_window, ...)
    model.safetensors  F16 weights, Hugging Face names and layout
    model.gguf         (llama, qwen2, qwen3, gemma3 cases) the same weights under llama.cpp's names and
                       metadata keys: `llama` q/k rows permuted for adjacent-pair RoPE and Llama 3's
                       frequency divisors as rope_freqs.weight; qwen2/qwen3/gemma3 rows as they are;
                       Gemma's norm weights stored as 1 + w (notes/model_families.md §1.2, §1.6)
    expected.json      {"ids", "greedy_from", "greedy": [8 tokens], "logits": [[vocab] per prompt position],
                        "float64_difference": max |float32 - float64 logits| of the twin}
The logits come from tools/pith_reference.py in float32 on the F16-rounded weights. Each case draws its tensors from one
torch.Generator in the order of checkpoint_tensor_names, then the prompt; when the greedy
continuation is too close to a tie (margin below MIN_GREEDY_MARGIN) or too repetitive, the next seed
is tried and the seed used is recorded in the safetensors metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_io import write_gguf  # noqa: E402
from pith_reference import (LlamaConfig, cast_weights, checkpoint_tensor_names, decode_incremental,  # noqa: E402
                            forward_logits, greedy_decode, permute_half_to_interleaved, weights_from_numpy)
from safetensors_io import round_to_dtype, write_safetensors  # noqa: E402

GREEDY_STEPS = 8
PROJECTION_STD = 0.2   # q/k/v/o/gate/up/down and the Qwen2 biases
EMBEDDING_STD = 0.5    # logits of a few units, top-2 well apart
NORM_STD = 0.1         # norm weights 1 + NORM_STD N(0, 1) (Gemma: NORM_STD N(0, 1), used as 1 + w)
MIN_GREEDY_MARGIN = 0.05
MIN_DISTINCT_GREEDY = 4
SEED_TRIES = 50
STORAGE = "F16"  # halves the files; the logits are computed from the rounded weights
# decode through the twin's cache vs its full forward: the same maths in another order
DECODE_TOLERANCE = 1e-4
GOLDEN_TOLERANCE = 1e-5   # --check: the same code on the same weights (only another BLAS could move it)
CHANGE_THRESHOLD = 1e-2   # a feature switched off must move some logit by more than this (100x the tolerance)


@dataclass(frozen=True)
class Case:
    name: str
    config: LlamaConfig
    seed: int
    prompt_length: int
    gguf: bool


def family(name: str, **keys) -> LlamaConfig:
    base = dict(rms_norm_eps=1e-6, max_position_embeddings=64, family=name)
    base.update(keys)
    return LlamaConfig(**base)


CASES = [
    # Llama 3.2-style: llama3 RoPE rescaling (original context 128 so that with head_dim 8 one pair
    # keeps its frequency, one is blended and two are divided), tied head, GQA.
    Case("llama3_tied", family("llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=64,
                               rope_theta=10000.0, tie_word_embeddings=True,
                               rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 128}),
         seed=3001, prompt_length=13, gguf=True),
    # Qwen2: q/k/v biases, one KV head, untied, odd vocabulary; widths of whole Q8_0 blocks (tests
    # quantize it at load).
    Case("qwen2_bias", family("qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=8, vocab_size=61,
                              rope_theta=1000000.0, tie_word_embeddings=False),
         seed=3101, prompt_length=13, gguf=True),
    # Qwen3: per-head q/k norms, head_dim 12 with heads * head_dim = 48 != hidden 20, tied.
    Case("qwen3_head_dim", family("qwen3", hidden_size=20, intermediate_size=36, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=12, vocab_size=64,
                                  rope_theta=1000000.0, tie_word_embeddings=True),
         seed=3201, prompt_length=13, gguf=True),
    # Mistral: one sliding window of 5 for every layer (the prompt of 13 passes it).
    Case("mistral_window", family("mistral", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=64,
                                  rope_theta=1000000.0, tie_word_embeddings=False, rms_norm_eps=1e-5,
                                  sliding_window=5),
         seed=3301, prompt_length=13, gguf=False),
    # Gemma 3 as llama.cpp reads it: six layers (the sixth global, the others a window of 4 with
    # their own RoPE base), linear RoPE scaling on the global layer, query_pre_attn_scalar = head_dim.
    Case("gemma3", family("gemma3", hidden_size=16, intermediate_size=24, num_hidden_layers=6,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=64,
                          rope_theta=1000000.0, tie_word_embeddings=True, sliding_window=4,
                          rope_local_base_freq=10000.0, query_pre_attn_scalar=8.0,
                          rope_scaling={"rope_type": "linear", "factor": 8.0}),
         seed=3401, prompt_length=13, gguf=True),
    # Gemma 3 with explicit layer_types, head_dim 16 != hidden / heads, query_pre_attn_scalar 24,
    # local RoPE base 100, window 3.
    Case("gemma3_layer_types", family("gemma3", hidden_size=24, intermediate_size=32, num_hidden_layers=3,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64,
                                      rope_theta=10000.0, tie_word_embeddings=False, sliding_window=3,
                                      layer_types=("sliding_attention", "full_attention", "sliding_attention"),
                                      rope_local_base_freq=100.0, query_pre_attn_scalar=24.0),
         seed=3501, prompt_length=13, gguf=False),
    # For reading documents (tests/runtime, tests/programs): Gemma 3 over the 157 words of
    # examples/models/toy-block/vocab.json, window 8, 512 positions.
    Case("gemma3_reader", family("gemma3", hidden_size=16, intermediate_size=24, num_hidden_layers=6,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=157,
                                 rope_theta=1000000.0, tie_word_embeddings=False, sliding_window=8,
                                 rope_local_base_freq=10000.0, query_pre_attn_scalar=8.0, max_position_embeddings=512),
         seed=3601, prompt_length=13, gguf=True),
]


def random_checkpoint(config: LlamaConfig, seed: int, prompt_length: int) -> tuple[dict[str, np.ndarray], list[int]]:
    generator = torch.Generator().manual_seed(seed)
    arrays = {}
    for name, shape in checkpoint_tensor_names(config):
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name.endswith("norm.weight"):
            tensor = NORM_STD * noise if config.gemma else 1.0 + NORM_STD * noise
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            tensor = EMBEDDING_STD * noise
        else:
            tensor = PROJECTION_STD * noise
        arrays[name] = tensor.numpy()
    prompt = torch.randint(0, config.vocab_size, (prompt_length,), generator=generator).tolist()
    return arrays, prompt


def float32_text(x: float) -> str:
    text = str(np.float32(x))
    assert np.float32(float(text)) == np.float32(x), text
    return text


def expected_json(ids, logits: np.ndarray, greedy, float64_difference: float) -> str:
    rows = ",\n    ".join("[" + ", ".join(float32_text(v) for v in row) + "]" for row in logits)
    return ("{\n"
            f'  "ids": {json.dumps(ids)},\n'
            f'  "greedy_from": {len(ids)},\n'
            f'  "greedy": {json.dumps(greedy)},\n'
            f'  "float64_difference": {float64_difference:.3g},\n'
            f'  "logits": [\n    {rows}\n  ]\n'
            "}\n")


# ------------------------------------------------------------------------------------------------
# GGUF: llama.cpp's architecture strings, metadata keys and tensor names (notes/model_families.md §1.6)

GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3": "gemma3"}
GGUF_LAYER_NAMES = {  # Hugging Face suffix -> GGUF suffix, per layer
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
    # Gemma 3's four norms; elsewhere post_attention_layernorm is the MLP's input norm
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


def gguf_metadata(c: LlamaConfig) -> list[tuple[str, str, object]]:
    a = GGUF_ARCH[c.family]
    out = [("general.architecture", "string", a), ("general.alignment", "uint32", 32),
           (f"{a}.context_length", "uint32", c.max_position_embeddings),
           (f"{a}.embedding_length", "uint32", c.hidden_size),
           (f"{a}.feed_forward_length", "uint32", c.intermediate_size),
           (f"{a}.block_count", "uint32", c.num_hidden_layers),
           (f"{a}.attention.head_count", "uint32", c.num_attention_heads),
           (f"{a}.attention.head_count_kv", "uint32", c.num_key_value_heads),
           (f"{a}.attention.layer_norm_rms_epsilon", "float32", c.rms_norm_eps),
           (f"{a}.rope.freq_base", "float32", c.rope_theta)]
    if c.head_dim * c.num_attention_heads != c.hidden_size or c.family in ("qwen3", "gemma3"):
        out += [(f"{a}.attention.key_length", "uint32", c.head_dim), (f"{a}.attention.value_length", "uint32", c.head_dim)]
    if a == "llama":
        out += [("llama.rope.dimension_count", "uint32", c.head_dim), ("llama.vocab_size", "uint32", c.vocab_size)]
    if c.gemma:
        if c.sliding_window is not None:
            out.append(("gemma3.attention.sliding_window", "uint32", c.sliding_window))
        scaling = c.rope_scaling or {}
        if scaling.get("rope_type") == "linear":
            out += [("gemma3.rope.scaling.type", "string", "linear"), ("gemma3.rope.scaling.factor", "float32", scaling["factor"])]
    return out


def gguf_tensors(weights: dict[str, torch.Tensor], c: LlamaConfig) -> dict[str, np.ndarray]:
    """llama.cpp's converter: names, `llama` q/k permutation, Llama 3 rope_freqs, Gemma's 1 + w norms."""
    permute = GGUF_ARCH[c.family] == "llama"
    out = {}

    def put(gguf_name: str, hf_name: str, heads: int | None = None):
        t = weights[hf_name]
        if permute and heads is not None:
            t = permute_half_to_interleaved(t, heads)
        if c.gemma and hf_name.endswith("norm.weight"):
            t = t + 1.0
        out[gguf_name] = t.numpy().astype(np.float32)

    put("token_embd.weight", "model.embed_tokens.weight")
    scaling = c.rope_scaling or {}
    if scaling.get("rope_type") == "llama3":
        base = LlamaConfig.inv_freq(LlamaConfig(**{**c.__dict__, "rope_scaling": None}), 0)
        out["rope_freqs.weight"] = (base / c.inv_freq(0)).numpy().astype(np.float32)
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        for hf, gg in GGUF_LAYER_NAMES.items():
            if p + hf not in weights:
                continue
            heads = {"self_attn.q_proj.weight": c.num_attention_heads,
                     "self_attn.k_proj.weight": c.num_key_value_heads}.get(hf)
            put(f"blk.{i}.{gg}", p + hf, heads)
        post = "post_attention_norm.weight" if c.gemma else "ffn_norm.weight"
        put(f"blk.{i}.{post}", p + "post_attention_layernorm.weight")
    put("output_norm.weight", "model.norm.weight")
    if not c.tie_word_embeddings:
        put("output.weight", "lm_head.weight")
    return out


def write_case(case: Case, root: Path) -> None:
    for seed in range(case.seed, case.seed + SEED_TRIES):
        arrays, ids = random_checkpoint(case.config, seed, case.prompt_length)
        arrays = {name: round_to_dtype(array, STORAGE) for name, array in arrays.items()}
        weights = weights_from_numpy(arrays)
        greedy, margins = greedy_decode(weights, case.config, ids, GREEDY_STEPS)
        if min(margins) >= MIN_GREEDY_MARGIN and len(set(greedy)) >= MIN_DISTINCT_GREEDY:
            break
    else:
        raise SystemExit(f"{case.name}: no seed in {SEED_TRIES} tries gives a clear greedy continuation")
    logits = forward_logits(weights, case.config, ids)
    logits64 = forward_logits(cast_weights(weights, torch.float64), case.config, ids)
    float64_difference = float((logits.double() - logits64).abs().max())
    decoded = decode_incremental(weights, case.config, ids)
    decode_difference = float((decoded - logits).abs().max())
    if decode_difference > DECODE_TOLERANCE:
        raise SystemExit(f"{case.name}: the twin's cached decode differs from its forward by {decode_difference:.3g}")

    folder = root / case.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(case.config.to_hf_dict("float32"), indent=2) + "\n")
    write_safetensors(folder / "model.safetensors", arrays, STORAGE,
                      {"format": "pt", "generator": f"pith tools/make_family_goldens.py seed {seed}"})
    if case.gguf:
        tensors = gguf_tensors(weights, case.config)
        # matrices in F16 like the safetensors file; 1-D tensors (norms, biases, rope_freqs) in F32 as
        # llama.cpp's converter writes them
        storage = {name: STORAGE for name, array in tensors.items() if array.ndim == 2}
        write_gguf(folder / "model.gguf", gguf_metadata(case.config), tensors, storage)
    (folder / "expected.json").write_text(expected_json(ids, logits.numpy(), greedy, float64_difference))
    print(f"{case.name}: seed {seed}, max |logit| {logits.abs().max():.3f}, float32 vs float64 {float64_difference:.2g}, "
          f"decode vs forward {decode_difference:.2g}, greedy {greedy}, smallest margin {min(margins):.3f}")


MULTIMODAL = "gemma3_multimodal"  # the gemma3 case as the text model of a Gemma3ForConditionalGeneration checkpoint
MULTIMODAL_SOURCE = "gemma3"
MULTIMODAL_DEFAULTS = ("rms_norm_eps", "rope_theta", "rope_local_base_freq")  # left to Gemma3TextConfig's defaults
VISION_TENSORS = {"vision_tower.vision_model.embeddings.patch_embedding.weight": (4, 3),
                  "multi_modal_projector.mm_input_projection_weight": (4, 16)}


def multimodal_files(root: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """config.json and tensors of the multimodal wrapper around the gemma3 case's model: text keys under
    text_config (some left to their defaults), text tensors under language_model.model.*, and two
    small vision tensors the text model does not use."""
    from safetensors_io import read_safetensors

    config = json.loads((root / MULTIMODAL_SOURCE / "config.json").read_text())
    text = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype") + MULTIMODAL_DEFAULTS}
    wrapper = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text,
               "torch_dtype": "float16"}
    arrays, _, _ = read_safetensors(root / MULTIMODAL_SOURCE / "model.safetensors")
    tensors = {"language_model." + name: array for name, array in arrays.items()}
    generator = torch.Generator().manual_seed(3701)
    for name, shape in VISION_TENSORS.items():
        tensors[name] = torch.randn(shape, generator=generator).numpy()
    return wrapper, tensors


def write_multimodal(root: Path) -> None:
    config, tensors = multimodal_files(root)
    folder = root / MULTIMODAL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(folder / "model.safetensors", tensors, STORAGE,
                      {"format": "pt", "generator": f"pith tools/make_family_goldens.py: {MULTIMODAL_SOURCE} wrapped"})
    print(f"{MULTIMODAL}: {MULTIMODAL_SOURCE}'s model as Gemma3ForConditionalGeneration (expected.json: {MULTIMODAL_SOURCE}'s)")


def feature_matters(case: Case, weights: dict[str, torch.Tensor], ids, logits: torch.Tensor) -> list[str]:
    """The family features each case is meant to exercise, each one switched off in turn: every one
    must move the logits by more than CHANGE_THRESHOLD (else the golden could not catch its absence)."""
    c = case.config
    variants = {}
    if c.rope_scaling is not None:
        variants["rope_scaling"] = (LlamaConfig(**{**c.__dict__, "rope_scaling": None}), weights)
    if c.sliding_window is not None:
        variants["sliding_window"] = (LlamaConfig(**{**c.__dict__, "sliding_window": None}), weights)
    if c.gemma and c.rope_local_base_freq is not None:
        variants["rope_local_base_freq"] = (LlamaConfig(**{**c.__dict__, "rope_local_base_freq": c.rope_theta}), weights)
    if c.gemma and c.query_pre_attn_scalar != c.head_dim:
        variants["query_pre_attn_scalar"] = (LlamaConfig(**{**c.__dict__, "query_pre_attn_scalar": float(c.head_dim)}), weights)
    for suffix in ("_proj.bias", "_norm.weight"):
        dropped = {n: t for n, t in weights.items() if not (n.endswith(suffix) and ".self_attn." in n)}
        if len(dropped) != len(weights):
            variants["self_attn *" + suffix] = (c, dropped)
    problems = []
    for what, (config, w) in variants.items():
        change = float((forward_logits(w, config, ids) - logits).abs().max())
        if change <= CHANGE_THRESHOLD:
            problems.append(f"{case.name}: without {what} the logits move by only {change:.3g}")
    return problems


def check(root: Path) -> int:
    """Re-runs the twin on every committed case and reads each GGUF back: the logits and greedy tokens
    of expected.json; the GGUF's tensors are the safetensors' under llama.cpp's transforms; each
    family feature changes the logits."""
    from gguf_io import read_gguf
    from pith_reference import load_checkpoint

    problems = []
    for case in CASES:
        before = len(problems)
        folder = root / case.name
        config, weights = load_checkpoint(folder)
        expected = json.loads((folder / "expected.json").read_text())
        ids = expected["ids"]
        logits = forward_logits(weights, config, ids)
        difference = float((logits - torch.tensor(expected["logits"])).abs().max())
        if difference > GOLDEN_TOLERANCE:
            problems.append(f"{case.name}: the twin's logits differ from expected.json by {difference:.3g}")
        if greedy_decode(weights, config, ids, GREEDY_STEPS)[0] != expected["greedy"]:
            problems.append(f"{case.name}: greedy tokens differ")
        if case.gguf:
            metadata, tensors, _, _ = read_gguf(folder / "model.gguf")
            made = gguf_tensors(weights, config)
            if set(made) != set(tensors):
                problems.append(f"{case.name}: GGUF tensor names {sorted(set(tensors) ^ set(made))} differ")
            else:
                worst = max(float(np.abs(made[n] - tensors[n]).max()) for n in made)
                if worst != 0.0:
                    problems.append(f"{case.name}: GGUF tensors differ from the safetensors' by {worst:.3g}")
            stored = {k: np.float32(v) if t == "float32" else v for k, (t, v) in metadata.items()}
            written = {k: np.float32(v) if t == "float32" else v for k, t, v in gguf_metadata(config)}
            if stored != written:
                problems.append(f"{case.name}: GGUF metadata differs from the config's")
        problems += feature_matters(case, weights, ids, logits)
        print(("  FAIL  " if len(problems) > before else "  ok    ") + case.name + f" (twin vs expected {difference:.2g})")
    from safetensors_io import read_safetensors
    config, tensors = multimodal_files(root)
    stored, _, _ = read_safetensors(root / MULTIMODAL / "model.safetensors")
    same = (json.loads((root / MULTIMODAL / "config.json").read_text()) == config and set(stored) == set(tensors)
            and all(np.array_equal(stored[n], round_to_dtype(tensors[n], STORAGE)) for n in tensors))
    if not same:
        problems.append(f"{MULTIMODAL}: not {MULTIMODAL_SOURCE}'s model wrapped")
    print(("  ok    " if same else "  FAIL  ") + MULTIMODAL)
    for problem in problems:
        print("  " + problem)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "tests" / "data" / "families")
    parser.add_argument("--check", action="store_true", help="only re-check the committed files in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not args.check:
        for case in CASES:
            write_case(case, args.out)
        write_multimodal(args.out)
    return check(args.out)


if __name__ == "__main__":
    sys.exit(main())
