# SPDX-License-Identifier: MIT
"""Writes the eviction goldens in tests/data/eviction/<case>/expected.json (docs/eviction.md).

    /usr/bin/python3 tools/make_eviction_goldens.py            # self-check, write, then re-check the files
    /usr/bin/python3 tools/make_eviction_goldens.py --check    # only re-check the committed files
    /usr/bin/python3 tools/make_eviction_goldens.py --out DIR  # write somewhere else
    /usr/bin/python3 tools/make_eviction_goldens.py --cases knorm,random   # (re)write these cases only
    /usr/bin/python3 tools/make_eviction_goldens.py --cases perplexity     # (re)write perplexity.json only

Every case reads a seeded random document with tools/pith_eviction.py on the gqa_untied golden model
(tests/data/llama/gqa_untied/model.safetensors, read with tools/safetensors_io.py), or for the hybrid
cases on a model with recurrent token mixers between attention layers: the document is
[1 (BOS)] + ids drawn uniformly from [3, vocab), the instruction 6 ids from [3, vocab), both from one
torch.Generator seeded with the case's seed (document first). The seed starts at BASE_SEED and is
increased until every top-k decision of the case wins by at least MIN_SCORE_GAP (the k-th score
minus the (k+1)-th; for roco also the std boundary of the candidates) and the same reading run in float64 keeps
exactly the same positions and answers the same, so that an exact comparison of the kept positions
in C++ is meaningful. tools/README.md ("The eviction twin") documents the file layout.
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
import pith_eviction  # noqa: E402
from pith_eviction import Model, Options, PER_HEAD_POLICIES, read, read_oneshot  # noqa: E402
from pith_reference import LlamaConfig, weights_from_numpy  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "llama/gqa_untied"            # relative to tests/data
CHUNK = 16
BUDGET = 24
INSTRUCTION_LENGTH = 6
ANSWER_TOKENS = 8
BASE_SEED = 2001
MIN_SCORE_GAP = 1e-6
LOGIT_TOLERANCE = 1e-5                # --check: same code, same weights


@dataclass(frozen=True)
class Case:
    name: str
    policy: str
    document_length: int = 120
    budget: int = BUDGET
    positions: str = "reindexed"
    citrus_pool: int = 1
    model: str = MODEL                # relative to tests/data
    pool_kernel: int = pith_eviction.SNAPKV_KERNEL   # the SnapKV family's pooling (reader_options::snapkv_kernel)
    pool_mode: str = "avg"                            # reader_options::snapkv_pool
    chunkkv_size: int = pith_eviction.CHUNKKV_SIZE
    random_seed: int = 0
    # The smallest decision gap accepted. Scores from the cached keys (knorm, keydiff) come from keys that
    # pith's kernels and PyTorch compute and re-rotate with their own roundings: a wider margin.
    min_gap: float = MIN_SCORE_GAP
    # The oneshot protocol (docs/eviction.md, "Protocols"): one pass, one cut at `ratio`, the question in
    # the cut or not; no steps.
    protocol: str = "chunked"
    ratio: float | None = None
    question_in_cut: bool = False

    @property
    def adaptive(self) -> bool:
        return pith_eviction.parse_label(self.policy)[1]

    def options(self) -> Options:
        return Options(self.pool_kernel, self.pool_mode, self.chunkkv_size, self.random_seed)


# The first nine policies, one default case each; the later ones below with their own settings.
FIRST_POLICIES = ("full", "streaming", "tova", "h2o", "snapkv", "roco", "citrus-cse", "citrus-shared", "citrus-separate")

CASES = [Case(policy.replace("-", "_"), policy) for policy in FIRST_POLICIES] + [
    # original positions: the document must fit the model's 64 positions (max_position_embeddings)
    Case("citrus_shared_original", "citrus-shared", document_length=56, positions="original"),
    Case("citrus_cse_budget0", "citrus-cse", budget=0),
    Case("citrus_cse_budget1", "citrus-cse", budget=1),
    # budget >= |D|: never evicts. 30 tokens so that k + L + max(L, |I| + 8) + 1 = 63 rows fit the
    # model's 64 positions (the C++ reader's reindexed-mode limit).
    Case("citrus_cse_budget30", "citrus-cse", document_length=30, budget=30),
    # CItruS scores averaged over 7 neighbouring slots before the top-k (reader_options::citrus_pool)
    Case("citrus_shared_pool7", "citrus-shared", citrus_pool=7),
    Case("citrus_separate_pool5", "citrus-separate", citrus_pool=5),
    # hybrid layouts: recurrent token mixers between attention layers (their states must survive the
    # instruction passes untouched, and citrus-separate's C_ins takes C_lm's)
    Case("citrus_shared_hybrid", "citrus-shared", model="layers/hybrid_even_non_approximate"),
    Case("citrus_separate_hybrid", "citrus-separate", model="../../examples/models/toy-hybrid"),
    Case("h2o_hybrid", "h2o", model="layers/hybrid_even_non_approximate"),
    # another family: Qwen3 (per-head q/k norms before RoPE, head_dim 12 with heads * head_dim != hidden)
    Case("citrus_shared_qwen3", "citrus-shared", model="families/qwen3_head_dim"),
    Case("snapkv_qwen3", "snapkv", model="families/qwen3_head_dim"),
    # the policies of the method table (docs/eviction.md)
    Case("random", "random", random_seed=20250611),
    Case("knorm", "knorm", min_gap=1e-4),
    Case("observed_attention", "observed-attention"),
    Case("chunkkv", "chunkkv"),
    # chunks of 6 over 40 old slots: six whole chunks and one of 4; a budget of 24 may end inside a chunk
    Case("chunkkv_size6", "chunkkv", chunkkv_size=6),
    Case("snapkv_question", "snapkv-question"),
    Case("keydiff", "keydiff", min_gap=1e-5),
    # layer budgets 23, 12, 1 (pyramid_budgets(12, 3)): 23 + 16 + max(16, 6 + 8) = 55 positions fit the 64
    Case("pyramidkv", "pyramidkv", budget=12),
    # the two cached layers of toy-hybrid (0 and 2; 1 and 3 are recurrent) share 2 x 24: budgets 47 and 1
    Case("pyramidkv_hybrid", "pyramidkv", model="../../examples/models/toy-hybrid"),
    # SnapKV's max pooling (the paper's LongBench configuration) over 5 slots
    Case("snapkv_max5", "snapkv", pool_kernel=5, pool_mode="max"),
    # the oneshot protocol at a compression ratio: 120 states cut once to floor(120 (1 - r))
    Case("snapkv_oneshot", "snapkv", protocol="oneshot", ratio=0.75),
    Case("citrus_shared_oneshot_seen", "citrus-shared", protocol="oneshot", ratio=0.5, question_in_cut=True),
    Case("h2o_oneshot", "h2o", protocol="oneshot", ratio=0.875),
    # FinchPress: snapkv-question's instruction window, each query weighted by the keys it sees
    Case("finch", "finch"),
    # CriticalKV: snapkv's scores; half the budget by score, the rest by score x ||W_o v||_1 (values
    # computed by pith's kernels and PyTorch with their own roundings: a wider margin)
    Case("criticalkv", "criticalkv", min_gap=1e-5),
    # ExpectedAttention: scores from the document's query statistics and the cached keys and values
    # (pith's float GEMM against float64 here: a wider margin)
    Case("expected_attention", "expected-attention", min_gap=1e-5),
    # the same three in the oneshot protocol: finch's document window weighted by p + 1, criticalkv over
    # 300 states (the reader's value weights in blocks of 256 rows), expected-attention's one cut
    Case("finch_oneshot", "finch", protocol="oneshot", ratio=0.5),
    Case("criticalkv_oneshot", "criticalkv", document_length=300, protocol="oneshot", ratio=0.75, min_gap=1e-5),
    Case("expected_attention_oneshot", "expected-attention", protocol="oneshot", ratio=0.5, min_gap=1e-5),
    # AdaKV's head-adaptive budgets (docs/eviction.md "AdaKV"): the layer's 2 x 12 shared by its two KV
    # heads, each at least floor(0.2 x 12) = 2; the fullest head's 2 x 12 - 2 + 16 + 16 = 54 positions
    # fit the model's 64
    Case("adakv_snapkv", "adakv(snapkv)", budget=12),
    Case("adakv_citrus_shared", "adakv(citrus-shared)", budget=12),
    # AdaKV in kvpress's protocol: one cut of 120 states to 2 x floor(120 x 0.25) per layer
    Case("adakv_snapkv_oneshot", "adakv(snapkv)", protocol="oneshot", ratio=0.75),
]


# Perplexity under eviction (tests/data/eviction/perplexity.json): the documents of these cases' goldens
# (their seeds make every selection win by MIN_SCORE_GAP and agree in float64; the continuation does not
# change the reading), each read again and followed by one continuation of PERPLEXITY_TOKENS ids drawn
# from [3, vocab) by a torch.Generator seeded with PERPLEXITY_SEED; per case the log-probability of
# every continuation token (reader::log_likelihood), their sum and the perplexity.
PERPLEXITY_CASES = ("full", "streaming", "snapkv", "h2o", "tova", "citrus_cse")
PERPLEXITY_SEED = 4001
PERPLEXITY_TOKENS = 16
PERPLEXITY_FILE = "perplexity.json"
LOG_PROB_TOLERANCE = 1e-6             # --check: same code, same weights (float64 log-softmax of float32 logits)


def load_golden_model(model: str = MODEL) -> Model:
    folder = ROOT / "tests" / "data" / model
    config = LlamaConfig.load(folder / "config.json")
    arrays, dtypes, _ = read_safetensors(folder / "model.safetensors")
    assert set(dtypes.values()) <= {"F32", "F16"}  # F16 weights are upcast, exactly
    return Model(config, weights_from_numpy(arrays))


def draw_inputs(seed: int, document_length: int, vocab: int) -> tuple[list[int], list[int]]:
    generator = torch.Generator().manual_seed(seed)
    document = [1] + torch.randint(3, vocab, (document_length - 1,), generator=generator).tolist()
    instruction = torch.randint(3, vocab, (INSTRUCTION_LENGTH,), generator=generator).tolist()
    return document, instruction


def read_case(model: Model, case: Case, document, instruction):
    if case.protocol == "oneshot":
        return read_oneshot(model, document, instruction, case.policy, ratio=case.ratio,
                            question_in_cut=case.question_in_cut, positions=case.positions,
                            answer_tokens=ANSWER_TOKENS, citrus_pool=case.citrus_pool, options=case.options())
    return read(model, document, instruction, case.policy, CHUNK, case.budget, case.positions, ANSWER_TOKENS,
                citrus_pool=case.citrus_pool, options=case.options())


def run_case(model: Model, case: Case, seed: int):
    document, instruction = draw_inputs(seed, case.document_length, model.config.vocab_size)
    return document, instruction, read_case(model, case, document, instruction)


def same_in_float64(model: Model, case: Case, document, instruction, reading) -> bool:
    """Whether the float64 twin keeps the same positions at every step and gives the same answer."""
    wide = read_case(model.cast(torch.float64), case, document, instruction)
    return ([s["kept"] for s in wide.steps] == [s["kept"] for s in reading.steps]
            and wide.final_kept == reading.final_kept and wide.answer == reading.answer)


def float32_text(x: float) -> str:
    """Shortest decimal that reads back as the same float32 (numpy's Dragon4)."""
    text = str(np.float32(x))
    assert np.float32(float(text)) == np.float32(x), text
    return text


def expected_json(case: Case, seed: int, document, instruction, reading) -> str:
    dump = lambda value: json.dumps(value, separators=(",", ":"))
    steps = ",\n    ".join(dump(step) for step in reading.steps)
    logits = ",".join(float32_text(v) for v in reading.answer_logits_first.tolist())
    gap = reading.min_gap()
    return ("{\n"
            f'  "policy": "{case.policy}",\n'
            f'  "chunk": {CHUNK},\n'
            f'  "budget": {case.budget},\n'
            f'  "positions": "{case.positions}",\n'
            + (f'  "protocol": "oneshot",\n  "ratio": {case.ratio},\n'
               f'  "question_in_cut": {"true" if case.question_in_cut else "false"},\n'
               if case.protocol == "oneshot" else "")
            + (f'  "citrus_pool": {case.citrus_pool},\n' if case.citrus_pool != 1 else "")
            + (f'  "pool_kernel": {case.pool_kernel},\n' if case.pool_kernel != pith_eviction.SNAPKV_KERNEL else "")
            + (f'  "pool_mode": "{case.pool_mode}",\n' if case.pool_mode != "avg" else "")
            + (f'  "chunkkv_size": {case.chunkkv_size},\n' if case.policy == "chunkkv" else "")
            + (f'  "random_seed": {case.random_seed},\n' if case.policy == "random" else "")
            + (f'  "adakv_alpha": {pith_eviction.ADAKV_ALPHA},\n' if case.adaptive else "") +
            f'  "model": "{case.model}",\n'
            f'  "seed": {seed},\n'
            f'  "selection": "{"per_head" if case.policy in PER_HEAD_POLICIES or case.adaptive else "per_layer"}",\n'
            f'  "document": {dump(document)},\n'
            f'  "instruction": {dump(instruction)},\n'
            f'  "steps": [\n    {steps}\n  ],\n'
            f'  "final_kept": {dump(reading.final_kept)},\n'
            f'  "answer": {dump(reading.answer)},\n'
            f'  "answer_logits_first": [{logits}],\n'
            f'  "answer_margins": [{",".join(f"{m:.6g}" for m in reading.answer_margins)}],\n'
            f'  "min_score_gap": {"null" if gap is None else f"{gap:.6g}"}\n'
            "}\n")


def perplexity_readings(root: Path) -> dict:
    """The perplexity golden's content, computed from the committed goldens' documents."""
    model = load_golden_model()
    continuation = torch.randint(3, model.config.vocab_size, (PERPLEXITY_TOKENS,),
                                 generator=torch.Generator().manual_seed(PERPLEXITY_SEED)).tolist()
    cases = []
    for name in PERPLEXITY_CASES:
        case = next(c for c in CASES if c.name == name)
        assert case.model == MODEL and case.positions == "reindexed" and case.budget == BUDGET, name
        expected = json.loads((root / name / "expected.json").read_text())
        reading = read(model, expected["document"], [], case.policy, CHUNK, case.budget, case.positions,
                       options=case.options(), continuation=continuation)
        # the same selections as the golden's reading: the seed's decision gaps hold
        assert [s["kept"] for s in reading.steps] == [s["kept"] for s in expected["steps"]], name
        cases.append({"case": name, "policy": case.policy, "selection": expected["selection"],
                      "document": expected["document"], "final_kept": reading.final_kept,
                      "log_probs": [float(f"{v:.10g}") for v in reading.continuation_log_probs],
                      "log_likelihood": float(f"{reading.log_likelihood:.10g}"),
                      "perplexity": float(f"{reading.perplexity:.10g}")})
    return {"model": MODEL, "chunk": CHUNK, "budget": BUDGET, "positions": "reindexed",
            "continuation_seed": PERPLEXITY_SEED, "continuation": continuation, "cases": cases}


def write_perplexity(root: Path) -> None:
    content = perplexity_readings(root)
    dump = lambda value: json.dumps(value, separators=(",", ":"))
    cases = ",\n    ".join(dump(case) for case in content["cases"])
    head = {k: v for k, v in content.items() if k != "cases"}
    text = "{\n" + "".join(f'  "{k}": {dump(v)},\n' for k, v in head.items()) + f'  "cases": [\n    {cases}\n  ]\n}}\n'
    (root / PERPLEXITY_FILE).write_text(text)
    for case in content["cases"]:
        print(f"perplexity {case['case']}: {case['perplexity']:.6g} (log-likelihood {case['log_likelihood']:.6g})")


def check_perplexity(root: Path) -> int:
    expected = json.loads((root / PERPLEXITY_FILE).read_text())
    content = perplexity_readings(root)
    problems = []
    if {k: v for k, v in expected.items() if k != "cases"} != {k: v for k, v in content.items() if k != "cases"}:
        problems.append("parameters or continuation")
    for want, got in zip(expected["cases"], content["cases"]):
        if (want["case"], want["document"], want["final_kept"]) != (got["case"], got["document"], got["final_kept"]):
            problems.append(f"{want['case']}: inputs or kept positions")
        elif max(abs(a - b) for a, b in zip(want["log_probs"], got["log_probs"])) > LOG_PROB_TOLERANCE:
            problems.append(f"{want['case']}: log_probs")
    if len(expected["cases"]) != len(content["cases"]):
        problems.append("case count")
    print(("  ok    " if not problems else "  FAIL  ") + PERPLEXITY_FILE + (f": {problems}" if problems else ""))
    return 1 if problems else 0


def describe_gaps(reading) -> str:
    scored = [g for g in reading.gaps if g.score is not None]
    stds = [g for g in reading.gaps if g.std is not None]
    parts = []
    if scored:
        g = min(scored, key=lambda g: g.score)
        parts.append(f"score gap {g.score:.3g} ({g.where})")
    if stds:
        g = min(stds, key=lambda g: g.std)
        parts.append(f"roco candidate-std gap {g.std:.3g} ({g.where})")
    return "; ".join(parts) or "no scored decision"


def write(root: Path, names: list[str] | None = None) -> int:
    model = load_golden_model()
    failures = pith_eviction.self_check(model, verbose=False)
    if failures:
        print("pith_eviction self-check failed:", *failures, sep="\n  ")
        return 1
    print("pith_eviction self-check: ok")
    unknown = set(names or []) - {case.name for case in CASES} - {"perplexity"}
    if unknown:
        print("unknown cases:", *sorted(unknown))
        return 1
    for case in CASES:
        if names and case.name not in names:
            continue
        model = load_golden_model(case.model)
        seed = BASE_SEED
        while True:
            document, instruction, reading = run_case(model, case, seed)
            gap = reading.min_gap()
            robust = same_in_float64(model, case, document, instruction, reading)
            if (gap is None or gap >= case.min_gap) and robust:
                break
            print(f"  {case.name}: seed {seed}: decision gap {'none' if gap is None else f'{gap:.3g}'} "
                  f"(minimum {case.min_gap}), "
                  f"float64 {'agrees' if robust else 'differs'}; trying {seed + 1}")
            seed += 1
        folder = root / case.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "expected.json").write_text(expected_json(case, seed, document, instruction, reading))
        print(f"{case.name}: seed {seed} (float64 agrees), answer {reading.answer}, smallest answer margin "
              f"{min(reading.answer_margins):.3g}; {describe_gaps(reading)}; "
              f"re-rotation error {reading.rerotation_error:.2g}")
    if not names or "perplexity" in names:
        write_perplexity(root)
    return check(root)


def check(root: Path) -> int:
    """Re-runs every case from its expected.json inputs and compares."""
    failures = 0
    for case in CASES:
        model = load_golden_model(case.model)
        path = root / case.name / "expected.json"
        expected = json.loads(path.read_text())
        document, instruction = draw_inputs(expected["seed"], case.document_length, model.config.vocab_size)
        options = Options(expected.get("pool_kernel", pith_eviction.SNAPKV_KERNEL), expected.get("pool_mode", "avg"),
                          expected.get("chunkkv_size", pith_eviction.CHUNKKV_SIZE), expected.get("random_seed", 0))
        if expected.get("protocol", "chunked") == "oneshot":
            reading = read_oneshot(model, expected["document"], expected["instruction"], expected["policy"],
                                   ratio=expected["ratio"], question_in_cut=expected["question_in_cut"],
                                   positions=expected["positions"], answer_tokens=ANSWER_TOKENS,
                                   citrus_pool=expected.get("citrus_pool", 1), options=options)
        else:
            reading = read(model, expected["document"], expected["instruction"], expected["policy"], expected["chunk"],
                           expected["budget"], expected["positions"], ANSWER_TOKENS,
                           citrus_pool=expected.get("citrus_pool", 1), options=options)
        logits = torch.tensor(expected["answer_logits_first"], dtype=torch.float32)
        problems = []
        if ((expected["policy"], expected["budget"], expected["positions"], expected["model"])
                != (case.policy, case.budget, case.positions, case.model) or options != case.options()
                or (expected.get("protocol", "chunked"), expected.get("ratio"), expected.get("question_in_cut", False))
                != (case.protocol, case.ratio, case.question_in_cut)):
            problems.append("case parameters")
        if expected["document"] != document or expected["instruction"] != instruction:
            problems.append("inputs are not the seed's")
        if [s["kept"] for s in expected["steps"]] != [s["kept"] for s in reading.steps]:
            problems.append("steps")
        if expected["final_kept"] != reading.final_kept:
            problems.append("final_kept")
        if expected["answer"] != reading.answer:
            problems.append("answer")
        if float((logits - reading.answer_logits_first).abs().max()) > LOGIT_TOLERANCE:
            problems.append("answer_logits_first")
        print(("  ok    " if not problems else "  FAIL  ") + f"{case.name}" + (f": {problems}" if problems else ""))
        failures += bool(problems)
    failures += check_perplexity(root)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"{len(CASES)} cases, {size} bytes in {root}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "eviction")
    parser.add_argument("--check", action="store_true", help="only re-check the files in --out")
    parser.add_argument("--cases", help="comma-separated case names, or perplexity (perplexity.json): write only these "
                        "(every case is re-checked)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one summation order
    return check(args.out) if args.check else write(args.out, args.cases.split(",") if args.cases else None)


if __name__ == "__main__":
    sys.exit(main())
