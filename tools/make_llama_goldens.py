# SPDX-License-Identifier: MIT
"""Writes the Llama goldens in tests/data/llama/: small random checkpoints and their expected logits.

Run from anywhere with Debian's interpreter (the one that has python3-torch):
    /usr/bin/python3 tools/make_llama_goldens.py            # writes tests/data/llama/, then checks it
    /usr/bin/python3 tools/make_llama_goldens.py --out DIR  # writes somewhere else

Every case folder holds
    config.json        Hugging Face keys (LlamaForCausalLM, model_type "llama")
    model.safetensors  the weights, stored as F32, F16 or BF16, Hugging Face names and layout
    expected.json      {"ids": [prompt], "greedy_from": len(prompt), "greedy": [8 tokens],
                        "logits": [[vocab float32 values] for every prompt position]}
The logits are computed by tools/pith_reference.py in float32 from the stored weights (for F16 and
BF16 cases: the rounded weights upcast to float32), half-rotation RoPE (the Hugging Face layout).
Each case draws its tensors from one torch.Generator seeded with the case's seed, in the order of
pith_reference.checkpoint_tensor_names, then draws the prompt from the same generator.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_reference  # noqa: E402
from pith_reference import (LlamaConfig, checkpoint_tensor_names, forward_logits,  # noqa: E402
                            greedy_decode, weights_from_numpy)
from safetensors_io import round_to_dtype, write_safetensors  # noqa: E402

GREEDY_STEPS = 8
PROJECTION_STD = 0.2  # q/k/v/o/gate/up/down
EMBEDDING_STD = 0.5   # embed_tokens and lm_head: logits of a few units, top-2 well apart
NORM_STD = 0.1        # norm weights are 1 + NORM_STD * N(0, 1)
MIN_GREEDY_MARGIN = 0.05  # each golden greedy token beats the runner-up by far more than rounding
MIN_DISTINCT_GREEDY = 5   # the greedy golden is not one token repeated (a weak test)
TORCH_DTYPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


@dataclass(frozen=True)
class Case:
    name: str
    config: LlamaConfig
    seed: int
    prompt_length: int
    dtype: str = "F32"


GQA = LlamaConfig(hidden_size=48, intermediate_size=72, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=12, vocab_size=97, rms_norm_eps=1e-5,
                  rope_theta=10000.0, tie_word_embeddings=False, max_position_embeddings=64)

CASES = [
    Case("gqa_untied", GQA, seed=1004, prompt_length=13),
    Case("head_dim_24",
         LlamaConfig(hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=1, head_dim=24, vocab_size=64, rms_norm_eps=1e-6,
                     rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=64),
         seed=1002, prompt_length=16),
    Case("mha_tied_odd",
         LlamaConfig(hidden_size=36, intermediate_size=37, num_hidden_layers=2, num_attention_heads=3,
                     num_key_value_heads=3, head_dim=12, vocab_size=61, rms_norm_eps=1e-5,
                     rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=64),
         seed=1018, prompt_length=11),
    Case("f16", GQA, seed=1004, prompt_length=13, dtype="F16"),   # gqa_untied's weights and prompt, rounded
    Case("bf16", GQA, seed=1004, prompt_length=13, dtype="BF16"),
]


def random_checkpoint(config: LlamaConfig, seed: int, prompt_length: int) -> tuple[dict[str, np.ndarray], list[int]]:
    """float32 weights {name: array} and a prompt, all drawn from one generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    arrays = {}
    for name, shape in checkpoint_tensor_names(config):
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if name.endswith("norm.weight"):
            tensor = 1.0 + NORM_STD * noise
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            tensor = EMBEDDING_STD * noise
        else:
            tensor = PROJECTION_STD * noise
        arrays[name] = tensor.numpy()
    prompt = torch.randint(0, config.vocab_size, (prompt_length,), generator=generator).tolist()
    return arrays, prompt


def float32_text(x: float) -> str:
    """Shortest decimal that reads back as the same float32 (numpy's Dragon4)."""
    text = str(np.float32(x))
    assert np.float32(float(text)) == np.float32(x), text
    return text


def expected_json(ids: list[int], logits: np.ndarray, greedy: list[int]) -> str:
    """expected.json text: one logits row per line."""
    rows = ",\n    ".join("[" + ", ".join(float32_text(v) for v in row) + "]" for row in logits)
    return ("{\n"
            f'  "ids": {json.dumps(ids)},\n'
            f'  "greedy_from": {len(ids)},\n'
            f'  "greedy": {json.dumps(greedy)},\n'
            f'  "logits": [\n    {rows}\n  ]\n'
            "}\n")


def write_case(case: Case, root: Path) -> None:
    arrays, ids = random_checkpoint(case.config, case.seed, case.prompt_length)
    arrays = {name: round_to_dtype(array, case.dtype) for name, array in arrays.items()}
    weights = weights_from_numpy(arrays)

    logits = forward_logits(weights, case.config, ids).numpy()
    greedy, margins = greedy_decode(weights, case.config, ids, GREEDY_STEPS)
    if min(margins) < MIN_GREEDY_MARGIN or len(set(greedy)) < MIN_DISTINCT_GREEDY:
        raise SystemExit(f"{case.name}: greedy {greedy} has margin {min(margins):.3g} or too few distinct "
                         "tokens; choose another seed")

    folder = root / case.name
    folder.mkdir(parents=True, exist_ok=True)
    config = case.config.to_hf_dict(TORCH_DTYPE[case.dtype])
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(folder / "model.safetensors", arrays, case.dtype,
                      {"format": "pt", "generator": f"pith tools/make_llama_goldens.py seed {case.seed}"})
    (folder / "expected.json").write_text(expected_json(ids, logits, greedy))
    print(f"{case.name}: {len(ids)} prompt tokens, max |logit| {np.abs(logits).max():.4f}, "
          f"greedy {greedy}, smallest greedy margin {min(margins):.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "data" / "llama")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one summation order for BLAS
    for case in CASES:
        write_case(case, args.out)
    return check_reference.main([str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
