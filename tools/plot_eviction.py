# SPDX-License-Identifier: MIT
"""Plots pith-evict-bench results: score against cache budget, one line per policy, one panel per task.

    /usr/bin/python3 tools/plot_eviction.py RESULTS.csv [MORE.csv ...] --out figure.png [--out figure.svg]
        [--length 32000] [--reference-length 512] [--model toy-block] [--table table.md]

Rows are filtered to one document length (default: the largest in the files) and, when the CSV
holds several models, one panel row per model. The full cache (budget = document length in the
CSV) is drawn as a dashed horizontal line. --table writes the same numbers as a Markdown table
(policies x budgets, per model and task). Needs only Debian's python3-matplotlib.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POLICY_ORDER = ["full", "streaming", "h2o", "tova", "snapkv", "roco", "citrus-cse", "citrus-shared", "citrus-separate"]
TASK_ORDER = ["passkey", "kv", "hop"]
STYLE = {
    "full": dict(color="black", linestyle="--"),
    "streaming": dict(color="#999999", marker="v"),
    "h2o": dict(color="#1f77b4", marker="o"),
    "tova": dict(color="#2ca02c", marker="s"),
    "snapkv": dict(color="#9467bd", marker="D"),
    "roco": dict(color="#8c564b", marker="^"),
    "citrus-cse": dict(color="#ff7f0e", marker="x"),
    "citrus-shared": dict(color="#d62728", marker="*", linewidth=2.2, markersize=9),
    "citrus-separate": dict(color="#e377c2", marker="P"),
}


def style_of(policy: str) -> dict:
    """A variant such as citrus-shared+pool7 (pith-evict-bench --citrus-pool) keeps its base policy's
    colour with a dash-dot line and hollow markers."""
    base, _, variant = policy.partition("+")
    style = dict(STYLE.get(base, {}))
    if variant:
        style.update(linestyle="-.", markerfacecolor="white", linewidth=2.0)
    return style


def read_rows(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for key in ("length", "budget", "documents", "correct"):
                    row[key] = int(row[key])
                row["score"] = float(row["score"])
                rows.append(row)
    return rows


def ordered_policies(names) -> list[str]:
    def rank(p: str) -> tuple[int, str]:
        base = p.split("+")[0]
        return (POLICY_ORDER.index(base) if base in POLICY_ORDER else len(POLICY_ORDER), p)
    return sorted(set(names), key=rank)


def plot(rows: list[dict], length: int, outputs: list[Path], title: str | None) -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    tasks = sorted(dict.fromkeys(r["task"] for r in rows), key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 9, t))
    # The legend goes into a panel no model/task fills, or beside the grid when every panel is used.
    filled = {(r["model"], r["task"]) for r in rows}
    legend_width = 0.0 if len(filled) < len(models) * len(tasks) else 2.3
    fig, axes = plt.subplots(len(models), len(tasks), figsize=(4.6 * len(tasks) + legend_width, 3.6 * len(models)),
                             squeeze=False, sharey=True)
    free_panels = []
    budgets_all = sorted({r["budget"] for r in rows if r["policy"] != "full"})
    for i, model in enumerate(models):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            cell = [r for r in rows if r["model"] == model and r["task"] == task]
            if not cell:  # a task this model was not run on
                ax.axis("off")
                free_panels.append(ax)
                continue
            for policy in ordered_policies(r["policy"] for r in cell):
                points = sorted((r["budget"], r["score"], r["documents"]) for r in cell if r["policy"] == policy)
                style = style_of(policy)
                if policy == "full":
                    # the full policy's budget is its document length
                    ax.axhline(points[0][1], label=f"full cache, {points[0][0]} tokens", **style)
                    continue
                ax.plot([p[0] for p in points], [p[1] for p in points], label=policy, **style)
            ax.set_xscale("log", base=2)
            ax.set_xticks(budgets_all)
            ax.set_xticklabels([str(b) for b in budgets_all])
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            documents = max((r["documents"] for r in cell if r["policy"] != "full"), default=0)
            ax.set_title(f"{model}: {task}, {length} tokens ({documents} docs/point)", fontsize=9)
            if i == len(models) - 1:
                ax.set_xlabel("budget k (old states kept besides the newest chunk)")
            if j == 0:
                ax.set_ylabel("fraction answered exactly")
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            key = "full" if l.startswith("full cache") else l.split(" (")[0]
            handles.setdefault(key, h)
            labels.setdefault(key, l)
    order = ordered_policies(handles)
    if free_panels:
        free_panels[-1].legend([handles[k] for k in order], [labels[k] for k in order], loc="center", ncol=1,
                               fontsize=9, frameon=False)
    else:
        fig.legend([handles[k] for k in order], [labels[k] for k in order], loc="center right", ncol=1, fontsize=8,
                   frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - legend_width / fig.get_figwidth(), 0.97 if title else 1))
    for out in outputs:
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


def table(rows: list[dict]) -> str:
    """Markdown: per model, task and length, policies x budgets."""
    lines = []
    groups = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["task"], r["length"])].append(r)
    for (model, task, length), cell in groups.items():
        budgets = sorted({r["budget"] for r in cell if r["policy"] != "full"})
        documents = max(r["documents"] for r in cell)
        lines.append(f"**{model}, {task}, {length} tokens** ({documents} documents per cell; score = fraction answered exactly)\n")
        columns = [f"k={b}" for b in budgets] or ["whole document"]
        lines.append("| policy | " + " | ".join(columns) + " | tokens/s | peak MiB |")
        lines.append("|---|" + "---:|" * (len(columns) + 2))
        for policy in ordered_policies(r["policy"] for r in cell):
            mine = [r for r in cell if r["policy"] == policy]
            by_budget = {r["budget"]: r for r in mine}
            if policy == "full":
                scores = [f"{mine[0]['score']:.2f}"] * len(columns)
            else:
                scores = [f"{by_budget[b]['score']:.2f}" if b in by_budget else "-" for b in budgets]
            speed = sum(float(r["tokens_per_s"]) for r in mine) / len(mine)
            peak = max(float(r["peak_memory_mib"]) for r in mine)
            lines.append(f"| {policy} | " + " | ".join(scores) + f" | {speed:,.0f} | {peak:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, action="append", default=[], help="PNG or SVG (repeatable)")
    parser.add_argument("--length", type=int, help="document length to plot (default: the largest)")
    parser.add_argument("--model", action="append", help="only these models (repeatable)")
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--reference-length", type=int,
                        help="also draw the full cache measured at this length (e.g. the training length)")
    parser.add_argument("--title")
    parser.add_argument("--table", type=Path, help="write a Markdown table of every length")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    if args.model:
        rows = [r for r in rows if r["model"] in args.model]
    if args.task:
        rows = [r for r in rows if r["task"] in args.task]
    if not rows:
        raise SystemExit("plot_eviction: no rows")
    if args.table:
        args.table.write_text(table(rows))
        print(f"wrote {args.table}")
    length = args.length or max(r["length"] for r in rows)
    selected = [r for r in rows if r["length"] == length or
                (r["policy"] == "full" and args.reference_length and r["length"] == args.reference_length)]
    if not selected:
        raise SystemExit(f"plot_eviction: no rows of length {length}")
    if args.out:
        plot(selected, length, args.out, args.title)


if __name__ == "__main__":
    main()
