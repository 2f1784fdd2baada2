# SPDX-License-Identifier: MIT
"""Policy sweeps on generated documents, as pith-evict-bench runs them.

    rows = pith.bench.sweep(model, policies=["streaming", "citrus-shared"], budgets=[16, 64],
                            lengths=[1000], tasks=["kv"], seeds=10, csv="sweep.csv")

Each row is one cell (task, length, depth, policy, budget, protocol) averaged over the seeds, with
the columns of pith-evict-bench's --csv file, which sweep(csv=PATH) writes in the same format.
"""
from __future__ import annotations

import csv as _csv
import json as _json
import math
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _pith

#: pith-evict-bench's --csv columns, in order.
CSV_COLUMNS: Tuple[str, ...] = (
    "model", "task_family", "task", "length", "depth", "policy", "protocol", "budget", "ratio", "question",
    "chunk", "documents", "correct", "score", "tokens_per_s", "peak_memory_mib", "state_mib",
    "seconds_per_document", "positions", "sinks",
)

#: The policies pith-evict-bench sweeps by default.
DEFAULT_POLICIES: Tuple[str, ...] = (
    "full", "streaming", "h2o", "tova", "snapkv", "roco", "citrus-cse", "citrus-shared", "citrus-separate",
)

#: pith-evict-bench --json's note, word for word.
JSON_NOTE = ("budget of the full policy = the document length (it keeps every state); a ratio row's budget: floor(length "
             "(1 - ratio)), each document keeping floor(n (1 - ratio)) of its n tokens; question: same or different (the "
             "instruction read with), oneshot rows add +seen when the question scored the cut; score: toy tasks the "
             "fraction answered exactly, RULER tasks string_match_all (correct: answers holding every gold string), "
             "task perplexity the perplexity of the continuation (lower is better); depth null: none, or drawn per "
             "document")

# RULER's answer lengths (ruler_answer_tokens): niah 128, vt 30, cwe 120, fwe 50.
_RULER_ANSWER_TOKENS = {"vt": 30, "cwe": 120, "fwe": 50}

PolicySpec = Union[str, Tuple[str, Callable[..., Any]], Tuple[str, Callable[..., Any], str]]


def _policy(spec: PolicySpec, citrus_pool: int) -> Dict[str, Any]:
    """A sweep's policy: a name ("citrus-shared", "citrus-shared+pool7", "adakv(snapkv)") or (label,
    callable[, policy_scores])."""
    if isinstance(spec, str):
        name, _, pool_text = spec.partition("+pool")
        base = name[len("adakv("):-1] if name.startswith("adakv(") and name.endswith(")") else name
        if base not in _pith.policy_names():
            raise _pith.ArgumentError(f"unknown eviction policy '{name}' ({', '.join(_pith.policy_names())})")
        citrus = base.startswith("citrus-")
        if pool_text and not citrus:
            raise _pith.ArgumentError(f"{spec}: +poolK applies to the citrus-* policies only")
        pool = int(pool_text) if pool_text else (citrus_pool if citrus else 1)
        label = name + (f"+pool{pool}" if pool > 1 else "")
        return {"label": label, "policy": name, "citrus_pool": pool, "policy_scores": "chunk"}
    if isinstance(spec, tuple) and len(spec) in (2, 3) and isinstance(spec[0], str) and callable(spec[1]):
        return {"label": spec[0], "policy": spec[1], "citrus_pool": citrus_pool,
                "policy_scores": spec[2] if len(spec) == 3 else "chunk"}
    raise TypeError(f"a policy is a name or a (label, callable[, policy_scores]) tuple, not {spec!r}")


def _other_kv_instruction(doc: Any) -> List[int]:
    """different_question: the kv instruction naming the fact after the asked one (in document order) instead
    of it, as pith-evict-bench --different-question reads with. A fact is "the code of NAME is ...", the
    instruction "what is the code of NAME ?"."""
    name_at, asked_at = 3, 5
    ids, out = doc.ids, list(doc.instruction)
    facts = doc.fact_offsets
    for i, offset in enumerate(facts):
        if ids[offset + name_at] == out[asked_at]:
            out[asked_at] = int(ids[facts[(i + 1) % len(facts)] + name_at])
            return out
    raise _pith.ArgumentError("sweep: the kv document does not hold the asked fact")


def _has_depth(task: str) -> bool:
    """Whether a RULER task has one asked needle at a depth (niah_single_*, niah_multikey_*)."""
    return task.startswith("niah_single_") or task.startswith("niah_multikey_")


def _reset_peak_memory() -> None:
    # Linux: VmHWM back to the current resident size, so each run reports its own peak.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def sweep(model: _pith.Model, *, policies: Sequence[PolicySpec] = DEFAULT_POLICIES,
          budgets: Sequence[int] = (16, 32, 64, 128, 256), lengths: Sequence[int] = (1000, 8000),
          tasks: Sequence[str] = ("passkey", "kv"), seeds: int = 10, seed_base: int = 0, facts: int = 8,
          chunk: int = 64, citrus_pool: int = 1, pool_kernel: int = 7, pool_mode: str = "avg",
          kv_type: str = "f32", positions: str = "reindexed", sinks: int = 4,
          protocols: Sequence[str] = ("chunked",), ratios: Sequence[float] = (), question_in_cut: bool = False,
          different_question: bool = False, full_max_length: int = 4096, adakv_alpha: float = 0.2,
          depths: Optional[Sequence[float]] = None, vt_chains: int = 1, answer_tokens: Optional[int] = None,
          threads: Optional[int] = 1, csv: Optional[str] = None, json: Optional[str] = None,
          progress: Optional[Callable[[int, int], None]] = None) -> List[Dict[str, Any]]:
    """Reads every (task, length, seed, protocol, policy, budget) and returns one row per cell.

    The toy tasks (passkey, kv, hop) need a toy model; RULER's tasks (pith.ruler_tasks()) a model whose
    tokenizer spells free text. `full` runs once per document (its budget: the length) and only up to
    full_max_length tokens. depths: needle depths in 0..1 for the RULER tasks with one asked needle
    (niah_single_*, niah_multikey_*; default: drawn per document); vt_chains: vt's chains; answer_tokens:
    a RULER answer's tokens (default RULER's). protocols: "chunked" and / or "oneshot"; ratios: compression
    ratios beside the budgets (a document of n tokens keeps floor(n (1 - r)) states: the chunked protocol
    reads with that budget, the oneshot one cuts to it); question_in_cut: the oneshot cut scored by the
    question. different_question (kv task alone, facts >= 2): each document read with the instruction about
    the next fact instead of the asked one, the question asked after it (the rows' question: "different").
    adakv_alpha: the adakv(...) policies' share of the budget spread evenly. A policy is a built-in name, "citrus-*+poolK", or (label, callable[,
    policy_scores]) for a Python policy (pith.Reader's policy=). threads: each reader's pool (default 1,
    as pith-evict-bench; None: the process-wide pool). progress(runs_done, runs) is called after each run.
    Returns a list of dicts with the CSV_COLUMNS keys (numbers unrounded); csv=PATH also writes them as
    pith-evict-bench --csv does, json=PATH as --json does (the sweep's settings and the rows). A run that raises pith.ArgumentError leaves its cell out, as there.
    """
    if seeds < 1:
        raise _pith.ArgumentError("sweep: seeds must be at least 1")
    if any(b < 1 for b in budgets):
        raise _pith.ArgumentError("sweep: a budget of 0 keeps no document state; use at least 1")
    specs = [_policy(p, citrus_pool) for p in policies]
    ruler_names = set(_pith.ruler_tasks())
    for task in tasks:
        if task not in ruler_names and task not in ("passkey", "kv", "hop"):
            raise _pith.ArgumentError(f"unknown task '{task}' (toy: passkey, kv, hop; RULER: {', '.join(sorted(ruler_names))})")
    if any(not 0.0 <= r < 1.0 for r in ratios):
        raise _pith.ArgumentError(f"sweep: ratios must be in [0, 1), not {list(ratios)}")
    if any(p not in ("chunked", "oneshot") for p in protocols):
        raise _pith.ArgumentError(f"sweep: protocols are chunked and oneshot, not {list(protocols)}")
    if question_in_cut and "oneshot" not in protocols:
        raise _pith.ArgumentError("sweep: question_in_cut applies to the oneshot protocol")
    if different_question and (any(t != "kv" for t in tasks) or facts < 2):
        raise _pith.ArgumentError("sweep: different_question runs the kv task alone, with at least 2 facts (it asks "
                                  "about another fact)")
    if not 0.0 <= adakv_alpha <= 1.0:
        raise _pith.ArgumentError(f"sweep: adakv_alpha {adakv_alpha} is outside [0, 1]")
    if depths is not None and any(not 0.0 <= d <= 1.0 for d in depths):
        raise _pith.ArgumentError(f"sweep: depths must be in 0..1, not {list(depths)}")
    tok = model.tokenizer
    model_name = os.path.basename(os.path.normpath(model.path))

    plan = []
    for task in tasks:
        task_depths = list(dict.fromkeys(depths)) if depths is not None and _has_depth(task) else [None]
        for length in lengths:
            for depth in task_depths:
                for seed in range(seed_base, seed_base + seeds):
                    for protocol in protocols:
                        for spec in specs:
                            if spec["policy"] == "full":
                                if length <= full_max_length:
                                    plan.append((task, length, depth, seed, protocol, spec, length, None))
                                continue
                            for budget in budgets:
                                plan.append((task, length, depth, seed, protocol, spec, budget, None))
                            for ratio in dict.fromkeys(ratios):
                                plan.append((task, length, depth, seed, protocol, spec,
                                             _pith.ratio_budget(length, ratio), ratio))

    cells: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
    document_key = None
    doc: Dict[str, Any] = {}
    for done, (task, length, depth, seed, protocol, spec, budget, ratio) in enumerate(plan):
        if document_key != (task, length, depth, seed):
            document_key = (task, length, depth, seed)
            if task in ruler_names:
                if tok is None:
                    raise _pith.ArgumentError("the RULER tasks need the model's tokenizer; none was found beside it")
                r = _pith.ruler_document(task, length, seed, model, depth, vt_chains)
                doc = {"ids": tok.encode(r.document, True, False), "instruction": tok.encode(r.instruction, False, False),
                       "gold": list(r.gold), "family": "ruler", "depth": r.depth,
                       "answer_tokens": answer_tokens or _RULER_ANSWER_TOKENS.get(task, 128)}
            else:
                t = _pith.toy_document(task, length, seed, facts)
                doc = {"ids": t.ids, "instruction": t.instruction, "answer": t.answer, "family": "toy", "depth": None,
                       "answer_tokens": len(t.answer),
                       "reading": _other_kv_instruction(t) if different_question else t.instruction}
        steps = doc["answer_tokens"]
        oneshot = protocol == "oneshot"
        run_budget = budget
        if ratio is not None and not oneshot:
            run_budget = _pith.ratio_budget(len(doc["ids"]), ratio)  # this document's n
        options = dict(policy=spec["policy"], budget=run_budget, chunk=chunk, citrus_pool=spec["citrus_pool"],
                       snapkv_kernel=pool_kernel, snapkv_pool=pool_mode, kv_type=kv_type, positions=positions,
                       sink=sinks, max_answer_tokens=steps + 1, instruction=doc.get("reading", doc["instruction"]),
                       question=doc["instruction"], protocol=protocol, threads=threads,
                       question_in_cut=oneshot and question_in_cut, adakv_alpha=adakv_alpha)
        if ratio is not None and oneshot:
            options["ratio"] = ratio
        if callable(spec["policy"]):
            options["policy_scores"] = spec["policy_scores"]
        if spec["policy"] == "full":
            options["max_context"] = len(doc["ids"]) + len(doc["instruction"]) + steps + 2
        depth_key = -1 if depth is None else int(math.floor(depth * 1000000.0 + 0.5))  # millionths, as the bench
        ratio_key = -1 if ratio is None else int(math.floor(ratio * 1000000.0 + 0.5))
        key = (task, length, depth_key, spec["label"], budget, protocol, ratio_key)
        try:
            _reset_peak_memory()
            start = time.perf_counter()
            reader = _pith.Reader(model, **options)
            reader.feed(doc["ids"])
            text = reader.answer(steps)  # decoded as the bench does: after the instruction, up to EOS
            seconds = time.perf_counter() - start
        except _pith.ArgumentError:
            if progress:
                progress(done + 1, len(plan))
            continue
        answer = reader.answer_ids
        if doc["family"] == "toy":
            score = 1.0 if answer == doc["answer"] else 0.0
        else:
            score = _pith.ruler_score(text, doc["gold"])
        stats = reader.stats
        c = cells.setdefault(key, {"runs": 0, "correct": 0, "score": 0.0, "tokens": 0.0, "reading_seconds": 0.0,
                                   "total_seconds": 0.0, "peak_bytes": 0, "state_bytes": 0, "family": doc["family"]})
        c["runs"] += 1
        c["correct"] += 1 if score == 1.0 else 0
        c["score"] += score
        c["tokens"] += stats.tokens_read
        c["reading_seconds"] += stats.reading_seconds
        c["total_seconds"] += seconds
        c["peak_bytes"] = max(c["peak_bytes"], _pith.peak_resident_bytes())
        c["state_bytes"] = max(c["state_bytes"], stats.state_bytes)
        if progress:
            progress(done + 1, len(plan))

    rows: List[Dict[str, Any]] = []
    for key in sorted(cells):
        task, length, depth_key, label, budget, protocol, ratio_key = key
        c = cells[key]
        oneshot = protocol == "oneshot"
        rows.append({
            "model": model_name, "task_family": c["family"], "task": task, "length": length,
            "depth": None if depth_key < 0 else depth_key / 1e6,
            "policy": label, "protocol": protocol, "budget": budget,
            "ratio": None if ratio_key < 0 else ratio_key / 1e6,
            "question": ("different" if different_question else "same") + ("+seen" if oneshot and question_in_cut else ""),
            "chunk": None if oneshot else chunk, "documents": c["runs"], "correct": c["correct"],
            "score": c["score"] / c["runs"],
            "tokens_per_s": c["tokens"] / c["reading_seconds"] if c["reading_seconds"] > 0 else 0.0,
            "peak_memory_mib": c["peak_bytes"] / (1 << 20), "state_mib": c["state_bytes"] / (1 << 20),
            "seconds_per_document": c["total_seconds"] / c["runs"], "positions": positions, "sinks": sinks,
        })
    if csv is not None:
        write_csv(rows, csv)
    if json is not None:
        settings = {"model": model_name, "model_path": model.path, "chunk": chunk, "facts": facts,
                    "seeds": [seed_base, seed_base + seeds - 1],
                    "threads": threads if threads is not None else _pith.num_threads(),
                    "full_max_length": full_max_length, "kv_type": kv_type, "positions": positions, "sinks": sinks,
                    "pool_kernel": pool_kernel, "pool_mode": pool_mode, "adakv_alpha": adakv_alpha,
                    "protocols": list(dict.fromkeys(protocols)), "ratios": [float(r) for r in ratios],
                    "question_in_cut": question_in_cut, "different_question": different_question}
        if any(task in ruler_names for task in tasks):
            settings.update(tokenizer="beside the model", vt_chains=vt_chains)
        write_json(rows, json, settings)
    return rows


def _text(value: Any, fmt: str) -> str:
    return "" if value is None else fmt % value


def write_csv(rows: Iterable[Dict[str, Any]], path: str) -> None:
    """Writes sweep rows as pith-evict-bench --csv does (same columns, same number formats)."""
    with open(path, "w", newline="") as f:
        f.write(",".join(CSV_COLUMNS) + "\n")
        for r in rows:
            values = [r["model"], r["task_family"], r["task"], str(r["length"]), _text(r["depth"], "%.6g"), r["policy"],
                      r["protocol"], str(r["budget"]), _text(r["ratio"], "%.6g"), r["question"],
                      _text(r["chunk"], "%d"), str(r["documents"]), str(r["correct"]), "%.4f" % r["score"],
                      "%.0f" % r["tokens_per_s"], "%.1f" % r["peak_memory_mib"], "%.3f" % r["state_mib"],
                      "%.3f" % r["seconds_per_document"], r["positions"], str(r["sinks"])]
            f.write(",".join(values) + "\n")


def _round_half_away(x: float) -> float:
    # std::round, as the bench rounds its measured columns.
    return math.copysign(math.floor(abs(x) + 0.5), x)


def write_json(rows: Iterable[Dict[str, Any]], path: str, settings: Dict[str, Any]) -> None:
    """Writes sweep rows as pith-evict-bench --json does: an object with the sweep's settings (model,
    model_path, chunk, facts, seeds as [first, last], threads, ...) and "rows", keys sorted, one-space indents."""
    rows = list(rows)
    out: Dict[str, Any] = dict(settings)
    out["note"] = JSON_NOTE
    out["rows"] = [{
        "task_family": r["task_family"], "task": r["task"], "length": r["length"], "depth": r["depth"],
        "policy": r["policy"], "protocol": r["protocol"], "budget": r["budget"], "ratio": r["ratio"],
        "question": r["question"], "documents": r["documents"], "correct": r["correct"], "score": float(r["score"]),
        "tokens_per_s": _round_half_away(r["tokens_per_s"]),
        "peak_memory_mib": _round_half_away(r["peak_memory_mib"] * 10) / 10,
        "state_mib": _round_half_away(r["state_mib"] * 1000) / 1000,
        "seconds_per_document": r["seconds_per_document"]} for r in rows]
    with open(path, "w") as f:
        _json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


def read_csv(path: str) -> List[Dict[str, str]]:
    """The rows of a pith-evict-bench (or sweep) CSV file, as dicts of strings."""
    with open(path, newline="") as f:
        return list(_csv.DictReader(f))


__all__ = ["CSV_COLUMNS", "DEFAULT_POLICIES", "JSON_NOTE", "sweep", "write_csv", "write_json", "read_csv"]
