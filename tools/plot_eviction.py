# SPDX-License-Identifier: MIT
"""Plots pith-evict-bench results: score against cache budget, one line per policy, one panel per task;
or, with --heatmap, RULER's needle plot: score by needle depth and document length.

    /usr/bin/python3 tools/plot_eviction.py RESULTS.csv [MORE.csv ...] --out figure.png [--out figure.svg]
        [--length 32000] [--reference-length 512] [--model toy-block] [--table table.md]
    /usr/bin/python3 tools/plot_eviction.py RESULTS.csv --heatmap depths.png [--task niah_single_1]
        [--policy citrus-shared] [--budget 1024]
    /usr/bin/python3 tools/plot_eviction.py RESULTS.csv --x ratio --out ratios.png   # kvpress's plot

Rows are filtered to one document length (default: the largest in the files) and, when the CSV
holds several models, one panel row per model. The full cache (budget = document length in the
CSV) is drawn as a dashed horizontal line. --table writes the same numbers as a Markdown table
(policies x budgets, per model and task). --heatmap draws the rows that have a needle depth
(pith-evict-bench --depths): one panel per task (columns) and policy and budget (rows; the full
cache as one row), depth from 0 (top) to 1 down, length across, the score in colour (red 0, green 1),
each cell's number written in it. --x ratio plots score against the compression ratio r of the rows
run with pith-evict-bench --ratios (kvpress's score-against-ratio plot; the table gets one column per
ratio); the full cache stays the dashed line. CSV files of older versions (no task_family or depth column) are
read as rows without a depth. Needs only Debian's python3-matplotlib.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POLICY_ORDER = ["full", "streaming", "h2o", "tova", "snapkv", "roco", "citrus-cse", "citrus-shared", "citrus-separate",
                "random", "knorm", "observed-attention", "chunkkv", "snapkv-question", "keydiff", "pyramidkv", "finch",
                "criticalkv", "expected-attention"]
TASK_ORDER = ["passkey", "kv", "hop", "niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1",
              "niah_multikey_2", "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe"]
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
    "random": dict(color="#bbbbbb", linestyle=":", marker="."),
    "knorm": dict(color="#17becf", marker="<"),
    "observed-attention": dict(color="#1f77b4", marker="o", linestyle=":"),
    "chunkkv": dict(color="#9467bd", marker="d", linestyle=":"),
    "snapkv-question": dict(color="#9467bd", marker="D", linestyle="-.", markerfacecolor="white"),
    "keydiff": dict(color="#bcbd22", marker=">"),
    "pyramidkv": dict(color="#7f7f7f", marker="h"),
    "finch": dict(color="#8c564b", marker="p", linestyle="-."),
    "criticalkv": dict(color="#2ca02c", marker="X", linestyle="-."),
    "expected-attention": dict(color="#ff7f0e", marker="H", linestyle=":"),
}


def style_of(policy: str) -> dict:
    """A variant such as citrus-shared+pool7 (pith-evict-bench --citrus-pool) keeps its base policy's
    colour with a dash-dot line and hollow markers."""
    name, _, protocol = policy.partition(" [")
    base, _, variant = name.partition("+")
    if base.startswith("adakv(") and base.endswith(")"):
        base, variant = base[len("adakv("):-1], "adakv"
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
                row["ratio"] = float(row["ratio"]) if row.get("ratio") else None
                row.setdefault("task_family", "toy")
                depth = row.get("depth") or ""
                row["depth"] = float(depth) if depth else None
                # The oneshot protocol and the different-question variant are series of their own; a
                # ratio row's budget is floor(length (1 - ratio)), plotted with the others.
                if row.get("protocol") == "oneshot":
                    row["policy"] += " [oneshot]"
                if row.get("question", "same") != "same":
                    row["policy"] += f" [{row['question']}]"
                rows.append(row)
    return rows


def merge_depths(rows: list[dict]) -> list[dict]:
    """One row per (model, task, length, policy, budget): rows of several needle depths are pooled
    (scores weighted by their documents) for the plots and tables over budgets."""
    merged: dict[tuple, dict] = {}
    for r in rows:
        key = (r["model"], r["task"], r["length"], r["policy"], r["budget"], r["ratio"])
        if key not in merged:
            merged[key] = dict(r, depth=None, _weighted=r["score"] * r["documents"], _speeds=[float(r["tokens_per_s"])])
            continue
        m = merged[key]
        m["documents"] += r["documents"]
        m["correct"] += r["correct"]
        m["_weighted"] += r["score"] * r["documents"]
        m["_speeds"].append(float(r["tokens_per_s"]))
        m["peak_memory_mib"] = str(max(float(m["peak_memory_mib"]), float(r["peak_memory_mib"])))
    out = []
    for m in merged.values():
        m["score"] = m.pop("_weighted") / m["documents"] if m["documents"] else 0.0
        speeds = m.pop("_speeds")
        m["tokens_per_s"] = str(sum(speeds) / len(speeds))
        out.append(m)
    return out


def ordered_policies(names) -> list[str]:
    def rank(p: str) -> tuple[int, str]:
        base = p.split(" [")[0].split("+")[0].removeprefix("adakv(").removesuffix(")")
        return (POLICY_ORDER.index(base) if base in POLICY_ORDER else len(POLICY_ORDER), p)
    return sorted(set(names), key=rank)


def x_of(r: dict, x: str):
    return r["ratio"] if x == "ratio" else r["budget"]


def plot(rows: list[dict], length: int, outputs: list[Path], title: str | None, x: str = "budget") -> None:
    models = list(dict.fromkeys(r["model"] for r in rows))
    tasks = sorted(dict.fromkeys(r["task"] for r in rows), key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 9, t))
    # The legend goes into a panel no model/task fills, or beside the grid when every panel is used.
    filled = {(r["model"], r["task"]) for r in rows}
    legend_width = 0.0 if len(filled) < len(models) * len(tasks) else 2.3
    fig, axes = plt.subplots(len(models), len(tasks), figsize=(4.6 * len(tasks) + legend_width, 3.6 * len(models)),
                             squeeze=False, sharey=True)
    free_panels = []
    budgets_all = sorted({x_of(r, x) for r in rows if r["policy"] != "full"})
    for i, model in enumerate(models):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            cell = [r for r in rows if r["model"] == model and r["task"] == task]
            if not cell:  # a task this model was not run on
                ax.axis("off")
                free_panels.append(ax)
                continue
            for policy in ordered_policies(r["policy"] for r in cell):
                points = sorted((x_of(r, x), r["score"], r["documents"]) for r in cell if r["policy"] == policy)
                style = style_of(policy)
                if policy == "full":
                    # the full policy's budget is its document length
                    full = next(r for r in cell if r["policy"] == policy)
                    ax.axhline(full["score"], label=f"full cache, {full['length']} tokens", **style)
                    continue
                ax.plot([p[0] for p in points], [p[1] for p in points], label=policy, **style)
            if x == "ratio":
                ax.set_xticks(budgets_all)
                ax.set_xticklabels([f"{b:g}" for b in budgets_all])
            else:
                ax.set_xscale("log", base=2)
                ax.set_xticks(budgets_all)
                ax.set_xticklabels([str(b) for b in budgets_all])
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            documents = max((r["documents"] for r in cell if r["policy"] != "full"), default=0)
            ax.set_title(f"{model}: {task}, {length} tokens ({documents} docs/point)", fontsize=9)
            if i == len(models) - 1:
                ax.set_xlabel("compression ratio r (n (1 - r) states kept)" if x == "ratio" else
                              "budget k (old states kept besides the newest chunk)")
            if j == 0:
                families = {r["task_family"] for r in rows}
                ax.set_ylabel("fraction answered exactly" if families == {"toy"} else
                              "RULER score (string_match_all)" if families == {"ruler"} else
                              "score (toy: exact, RULER: string_match_all)")
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


def table(rows: list[dict], x: str = "budget") -> str:
    """Markdown: per model, task and length, policies x budgets (or ratios)."""
    lines = []
    groups = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["task"], r["length"])].append(r)
    for (model, task, length), cell in groups.items():
        budgets = sorted({x_of(r, x) for r in cell if r["policy"] != "full"})
        documents = max(r["documents"] for r in cell)
        what = ("score = RULER's string_match_all, every depth pooled" if cell[0]["task_family"] == "ruler"
                else "score = fraction answered exactly")
        lines.append(f"**{model}, {task}, {length} tokens** ({documents} documents per cell; {what})\n")
        columns = [f"r={b:g}" if x == "ratio" else f"k={b}" for b in budgets] or ["whole document"]
        lines.append("| policy | " + " | ".join(columns) + " | tokens/s | peak MiB |")
        lines.append("|---|" + "---:|" * (len(columns) + 2))
        for policy in ordered_policies(r["policy"] for r in cell):
            mine = [r for r in cell if r["policy"] == policy]
            by_budget = {x_of(r, x): r for r in mine}
            if policy == "full":
                scores = [f"{mine[0]['score']:.2f}"] * len(columns)
            else:
                scores = [f"{by_budget[b]['score']:.2f}" if b in by_budget else "-" for b in budgets]
            speed = sum(float(r["tokens_per_s"]) for r in mine) / len(mine)
            peak = max(float(r["peak_memory_mib"]) for r in mine)
            lines.append(f"| {policy} | " + " | ".join(scores) + f" | {speed:,.0f} | {peak:.1f} |")
        lines.append("")
    return "\n".join(lines)


def heatmap(rows: list[dict], outputs: list[Path], title: str | None) -> None:
    """Score by needle depth (down) and length (across): a panel per task (columns) and policy x budget (rows)."""
    rows = [r for r in rows if r["depth"] is not None]
    if not rows:
        raise SystemExit("plot_eviction: no rows with a needle depth (run pith-evict-bench with --depths)")
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))

    def setting(r: dict) -> tuple:
        # the full cache keeps every state: one row whatever its budget (= the length)
        return (r["model"], r["policy"], None if r["policy"] == "full" else r["budget"])

    def setting_rank(key: tuple) -> tuple:
        model, policy, budget = key
        return (model, ordered_policies([policy, *POLICY_ORDER]).index(policy), budget or 0)

    settings = sorted({setting(r) for r in rows}, key=setting_rank)
    lengths = sorted({r["length"] for r in rows})
    depths = sorted({r["depth"] for r in rows})
    fig, axes = plt.subplots(len(settings), len(tasks), squeeze=False, constrained_layout=True,
                             figsize=((0.55 * len(lengths) + 1.3) * len(tasks) + 1.2,
                                      (0.2 * len(depths) + 1.3) * len(settings) + 0.4))
    image = None
    for i, key in enumerate(settings):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            cells = {(r["depth"], r["length"]): r for r in rows if setting(r) == key and r["task"] == task}
            grid = [[cells[(d, n)]["score"] if (d, n) in cells else float("nan") for n in lengths] for d in depths]
            image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            for a, d in enumerate(depths):
                for b, n in enumerate(lengths):
                    if (d, n) in cells and len(depths) * len(lengths) <= 400:
                        ax.text(b, a, f"{cells[(d, n)]['score']:.2f}", ha="center", va="center", fontsize=6)
            ax.set_xticks(range(len(lengths)))
            ax.set_xticklabels([str(n) for n in lengths], fontsize=7, rotation=45 if len(lengths) > 4 else 0)
            step = max(1, len(depths) // 10)
            ax.set_yticks(range(0, len(depths), step))
            ax.set_yticklabels([f"{depths[a]:.2g}" for a in range(0, len(depths), step)], fontsize=7)
            model, policy, budget = key
            documents = max((r["documents"] for r in cells.values()), default=0)
            name = "full cache" if budget is None else f"{policy}, k={budget}"
            ax.set_title(f"{model}: {task}\n{name} ({documents} docs/cell)", fontsize=8)
            if i == len(settings) - 1:
                ax.set_xlabel("document length (tokens)", fontsize=8)
            if j == 0:
                ax.set_ylabel("needle depth", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.6, label="score")
    if title:
        fig.suptitle(title, fontsize=10)
    for out in outputs:
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")


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
    parser.add_argument("--heatmap", type=Path, action="append", default=[],
                        help="PNG or SVG of score by needle depth x length (repeatable; rows with a depth)")
    parser.add_argument("--policy", action="append", help="only these policies (repeatable)")
    parser.add_argument("--budget", type=int, action="append", help="only these budgets (repeatable; full is kept)")
    parser.add_argument("--x", choices=("budget", "ratio"), default="budget",
                        help="ratio: score against the compression ratio of the --ratios rows (kvpress's plot)")
    args = parser.parse_args()
    rows = read_rows(args.csv)
    if args.x == "ratio":  # the ratio rows, and the full cache (either protocol) as the reference line
        rows = [dict(r, policy="full") if r["policy"].startswith("full") else r for r in rows
                if r["ratio"] is not None or r["policy"].startswith("full")]
    if args.model:
        rows = [r for r in rows if r["model"] in args.model]
    if args.task:
        rows = [r for r in rows if r["task"] in args.task]
    if args.policy:
        rows = [r for r in rows if r["policy"] in args.policy or r["policy"].split(" [")[0] in args.policy]
    if args.budget:
        rows = [r for r in rows if r["policy"] == "full" or r["budget"] in args.budget]
    if not rows:
        raise SystemExit("plot_eviction: no rows")
    if args.heatmap:
        heatmap(rows, args.heatmap, args.title)
        if not args.out and not args.table:
            return
    rows = merge_depths(rows)
    if args.table:
        args.table.write_text(table(rows, args.x))
        print(f"wrote {args.table}")
    length = args.length or max(r["length"] for r in rows)
    selected = [r for r in rows if r["length"] == length or
                (r["policy"] == "full" and args.reference_length and r["length"] == args.reference_length)]
    if not selected:
        raise SystemExit(f"plot_eviction: no rows of length {length}")
    if args.out:
        plot(selected, length, args.out, args.title, args.x)


if __name__ == "__main__":
    main()
