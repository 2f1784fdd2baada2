# SPDX-License-Identifier: MIT
"""Trains pith's toy retrieval checkpoints on the synthetic tasks of toy_tasks.py and exports them.

    /usr/bin/python3 tools/toy_train.py --out examples/models/toy-standard --residual standard --minutes 20
    /usr/bin/python3 tools/toy_train.py --out examples/models/toy-block --residual block --block-size 2
    /usr/bin/python3 tools/toy_train.py --out examples/models/toy-hybrid --mixers even:approximate
    /usr/bin/python3 tools/toy_train.py --check examples/models/toy-block   # accuracy of a written model

`ToyModel` is a batched, trainable copy of pith_reference.py's forward pass (the same parameter
names, RoPE half layout, grouped-query attention, the standard and block residual streams, the
standard / approximate / non_approximate token mixers); after training, the exported checkpoint is
read back with pith_reference.load_checkpoint and its logits are compared with the module's, so the
files hold exactly the function that was trained. Each training sequence is
BOS + document + instruction + answer + EOS; the loss is the cross-entropy of the answer and EOS
tokens (and of up to --extra-questions further kv questions appended after the first answer,
each ending with EOS) plus `--lm-weight` times the next-token loss over the document. Document lengths are drawn
uniformly from [--short-min-length, --short-max-length] during the first --curriculum fraction of
the time budget, then from [--min-length, --max-length], per step (all documents of a step share it), the task
from --tasks, the kv/hop fact count uniformly from 1..min(12, (length - 1) // 24). Training seeds
are 2^40 + (run seed << 24) + counter, disjoint from the evaluation seeds (< 2^32).
Runs on one thread (torch.set_num_threads(1)); --minutes is a limit on the process's CPU time.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import sys
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, BLAS included
    os.environ.setdefault(_variable, "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toy_tasks  # noqa: E402
from pith_reference import (LlamaConfig, checkpoint_tensor_names, forward as reference_forward,  # noqa: E402
                            load_checkpoint)
from safetensors_io import write_safetensors  # noqa: E402

TRAIN_SEED_BASE = 1 << 40
EVAL_SEED_BASE = 1 << 20   # held-out documents: seeds EVAL_SEED_BASE + i, far below the training seeds
EXPORT_TOLERANCE = 2e-4    # |module - reference| logits: both float32, different summation orders


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float):
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(angles).float(), torch.sin(angles).float()
    return torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)  # [T, d]


def rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, d], Hugging Face half layout."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


ATTENTION_BLOCK = 256  # query rows per block of causal_attention


@functools.lru_cache(maxsize=64)
def causal_bias(start: int, end: int, g: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive causal mask of query rows [start, end) against keys [0, end), repeated for g query
    heads: [g * (end - start), end], 0 where a key is visible and -inf after the row's position.
    Cached: every layer of a forward, and every forward of the same length, asks for the same blocks."""
    rows = torch.arange(start, end).repeat(g)[:, None]
    return torch.zeros(g * (end - start), end, dtype=dtype).masked_fill(torch.arange(end)[None, :] > rows,
                                                                        float("-inf"))


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention with grouped KV heads: q [B, T, H, d], k and v [B, T, KV, d] -> [B, T, H * d].

    Equal to softmax(q k^T / sqrt(d) + causal mask) v with every KV head shared by H / KV consecutive
    query heads, computed per block of ATTENTION_BLOCK query rows against only the keys at or before
    the block's end: the masked half of the T x T scores is mostly never formed (0.59 of the work at
    T = 1,400), the query heads of one KV head are one matrix product instead of repeated keys, and
    the scale and mask enter the product (baddbmm) instead of two further passes over T x T."""
    B, T, H, d = q.shape
    kv = k.shape[2]
    g = H // kv
    qh = q.view(B, T, kv, g, d).permute(0, 2, 3, 1, 4).reshape(B * kv, g, T, d)
    kh = k.permute(0, 2, 1, 3).reshape(B * kv, T, d)
    vh = v.permute(0, 2, 1, 3).reshape(B * kv, T, d)
    blocks = []
    for start in range(0, T, ATTENTION_BLOCK):
        end = min(T, start + ATTENTION_BLOCK)
        rows = qh[:, :, start:end].reshape(B * kv, g * (end - start), d)
        scores = torch.baddbmm(causal_bias(start, end, g, q.dtype), rows, kh[:, :end].transpose(1, 2),
                               alpha=1.0 / math.sqrt(d))
        blocks.append(torch.bmm(torch.softmax(scores, -1), vh[:, :end]).view(B * kv, g, end - start, d))
    out = torch.cat(blocks, 2).view(B, kv, g, T, d)
    return out.permute(0, 3, 1, 2, 4).reshape(B, T, H * d)


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (beta 0.9/0.95); no weight decay on gains and the block residuals' pseudo-queries."""
    decay = [p for n, p in model.weights.items() if p.dim() >= 2 and "res_proj" not in n]
    no_decay = [p for n, p in model.weights.items() if not (p.dim() >= 2 and "res_proj" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def learning_rate(base: float, step: int, warmup: int, progress: float) -> float:
    """Linear warm-up, then cosine decay to 0.1 x base over the time budget (`progress` in [0, 1])."""
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_step(model, optimizer, ids: torch.Tensor, answer: torch.Tensor, document: torch.Tensor,
               lm_weight: float) -> tuple[float, float]:
    """One AdamW step on answer loss + lm_weight x document loss (gradients clipped at 1); the two losses."""
    logits = model(ids[:, :-1])
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    losses = losses.view(ids.shape[0], -1)
    answer_loss = losses[answer].mean()
    lm_loss = losses[document].mean()
    optimizer.zero_grad()
    (answer_loss + lm_weight * lm_loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return answer_loss.item(), lm_loss.item()


def load_module(folder: Path, seed: int = 0) -> "ToyModel":
    """A trainable module holding the weights of a written model folder."""
    config, loaded = load_checkpoint(folder)
    model = ToyModel(config, seed)
    for name, tensor in loaded.items():
        model.w(name).data.copy_(tensor)
    return model


class ToyModel(torch.nn.Module):
    """Batched twin of pith_reference.forward for the features the toy models use."""

    def __init__(self, config: LlamaConfig, seed: int, args_shared: float = 0.0):
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(seed)
        self.names = [name for name, _ in checkpoint_tensor_names(config)]
        self.weights = torch.nn.ParameterDict()
        depth_scale = 1.0 / math.sqrt(2 * config.num_hidden_layers)
        for name, shape in checkpoint_tensor_names(config):
            if name.endswith("_res_proj.weight"):
                value = torch.zeros(shape)  # zero pseudo-query: every depth mix starts as a plain average
            elif len(shape) == 1:
                value = torch.ones(shape)
            elif name == "model.embed_tokens.weight":
                # a direction shared by every token (after rms_norm, a constant input to q and k), so
                # content-independent, relative-position heads (previous token, two back) are easy to learn
                shared = torch.randn(shape[1], generator=generator)
                value = torch.randn(shape, generator=generator) + args_shared * shared / shared.norm() * shape[1] ** 0.5
            else:  # 1/sqrt(fan_in), output projections scaled down by the depth
                std = shape[1] ** -0.5 * (depth_scale if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0)
                value = torch.randn(shape, generator=generator) * std
            self.weights[name.replace(".", "__")] = torch.nn.Parameter(value)

    def w(self, name: str) -> torch.Tensor:
        return self.weights[name.replace(".", "__")]

    def state_dict_hf(self) -> dict[str, np.ndarray]:
        return {name: self.w(name).detach().float().numpy().copy() for name in self.names}

    def mixer(self, layer: int, x: torch.Tensor, cos, sin, mask) -> torch.Tensor:
        c, p = self.config, f"model.layers.{layer}.self_attn."
        B, T, _ = x.shape
        d, heads, kv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
        q = (x @ self.w(p + "q_proj.weight").T).view(B, T, heads, d)
        k = (x @ self.w(p + "k_proj.weight").T).view(B, T, kv, d)
        v = (x @ self.w(p + "v_proj.weight").T).view(B, T, kv, d)
        kind = c.mixer(layer)
        if kind == "standard":
            out = causal_attention(rope_half(q, cos, sin), rope_half(k, cos, sin), v)
            return out @ self.w(p + "o_proj.weight").T
        k, v = k.repeat_interleave(heads // kv, dim=2), v.repeat_interleave(heads // kv, dim=2)
        if kind == "approximate":
            dot = torch.einsum("bthd,bshd->bhts", q, k)
            if c.approximate_order2 == "outer":
                second = dot * dot / (2 * d)
            else:
                second = torch.einsum("bthd,bshd->bhts", q * q, k * k) / (2 * d)
            a = (1.0 + dot / math.sqrt(d) + second) * mask
            if c.approximate_norm != "joint":
                raise ValueError("toy_train: only approximate_norm 'joint' is implemented")
            out = torch.einsum("bhts,bshd->bthd", a, v) / (a.sum(-1).transpose(1, 2)[..., None] + 1e-12)
        elif kind == "non_approximate":
            s = (F.silu(q) * k).sum(-1) / math.sqrt(d)  # [B, T, H]: gate of key position j
            scores = s.permute(0, 2, 1)[:, :, None, :].expand(B, heads, T, T)
            probabilities = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
            out = torch.einsum("bhts,bshd->bthd", probabilities, v)
        else:
            raise ValueError(f"toy_train: mixer {kind!r} is not implemented")
        return out.reshape(B, T, heads * d) @ self.w(p + "o_proj.weight").T

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        c = self.config
        B, T = ids.shape
        eps = c.rms_norm_eps
        cos, sin = rope_tables(torch.arange(T), c.head_dim, c.rope_theta)
        mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
        e = self.w("model.embed_tokens.weight")[ids]

        def attn_site(layer, h):
            return self.mixer(layer, rms(h, self.w(f"model.layers.{layer}.input_layernorm.weight"), eps), cos, sin, mask)

        def mlp_site(layer, h):
            p = f"model.layers.{layer}."
            x = rms(h, self.w(p + "post_attention_layernorm.weight"), eps)
            return (F.silu(x @ self.w(p + "mlp.gate_proj.weight").T) * (x @ self.w(p + "mlp.up_proj.weight").T)) \
                @ self.w(p + "mlp.down_proj.weight").T

        def q_eff(site):
            return self.w(site + "_res_norm.weight") * self.w(site + "_res_proj.weight")[0]

        def mix(q, sources):
            if len(sources) == 1:
                return sources[0]
            values = torch.stack(sources)
            scores = (values @ q) * torch.rsqrt(values.pow(2).mean(-1) + eps)
            return (torch.softmax(scores, 0)[..., None] * values).sum(0)

        if c.attn_res_mode == "standard":
            h = e
            for layer in range(c.num_hidden_layers):
                h = h + attn_site(layer, h)
                h = h + mlp_site(layer, h)
        elif c.attn_res_mode == "block":
            blocks, prefix = [], e
            for layer in range(c.num_hidden_layers):
                x = prefix if not blocks else mix(q_eff(f"model.layers.{layer}.self_attention"), blocks + [prefix])
                if layer % c.attn_res_block_size == 0:
                    blocks.append(prefix)
                    prefix = None
                a = attn_site(layer, x)
                prefix = a if prefix is None else prefix + a
                y = mix(q_eff(f"model.layers.{layer}.mlp"), blocks + [prefix])
                prefix = prefix + mlp_site(layer, y)
            h = mix(q_eff("model.output_attn"), blocks + [prefix])
        else:
            raise ValueError("toy_train: attn_res_mode 'full' is not implemented")
        h = rms(h, self.w("model.norm.weight"), eps)
        head = self.w("model.embed_tokens.weight") if c.tie_word_embeddings else self.w("lm_head.weight")
        return h @ head.T


def draw_facts(rng: random.Random, task: str, length: int) -> int:
    if task == "passkey":
        return toy_tasks.DEFAULT_FACTS
    most = max_facts(length - 8 if task == "hop" else length)  # hop adds a 7-word link fact
    return rng.randint(min(2, most), most)


def max_facts(length: int) -> int:
    """Most kv/hop facts a training document of `length` tokens gets: 12, fewer below 145 tokens."""
    return max(1, min(12, (length - 1) // 12))


def kv_facts(doc) -> list[tuple[int, list[int]]]:
    """(name id, code ids) of every "the code of NAME is D D D D ." fact of a document."""
    ids, out = doc.ids, []
    for offset in doc.fact_offsets:
        if ids[offset + 1] == toy_tasks.IDS["code"] and ids[offset + 4] == toy_tasks.IDS["is"]:
            out.append((ids[offset + 3], ids[offset + 5:offset + 9]))
    return out


def make_batch(rng: random.Random, tasks: list[str], weights: list[float], length: int, batch: int, counter: int,
               run_seed: int, extra_questions: int, restate: float):
    """Token ids [B, T], the answer-loss mask and the document-loss mask [B, T - 1] of `batch` training sequences.

    A sequence is BOS + document + instruction + answer + EOS, then (kv and hop documents) up to
    `extra_questions` further kv questions about other facts of the document, each followed by its
    answer and EOS, or (probability `restate`) the restatement "the code of NAME is" followed by the
    code and "." (a plain induction target, which the model learns first): more supervised answer
    tokens per document. The first question is exactly the
    evaluation format; the answer loss covers every answer and EOS."""
    rows, spans = [], []
    ask = [toy_tasks.IDS[w] for w in ("what", "is", "the", "code", "of")]
    restate_prefix = [toy_tasks.IDS[w] for w in ("the", "code", "of")]
    for i in range(batch):
        task = rng.choices(tasks, weights)[0]
        seed = TRAIN_SEED_BASE + (run_seed << 24) + counter + i
        doc = toy_tasks.make_document(task, length, seed, draw_facts(rng, task, length))
        ids = doc.ids + doc.instruction_ids
        row_spans = [(len(ids) - 1, len(ids) + len(doc.answer_ids))]  # predictions of the answer and EOS
        ids += doc.answer_ids + [toy_tasks.EOS]
        facts = [f for f in kv_facts(doc) if not (task == "kv" and f[1] + [toy_tasks.IDS["."]] == doc.answer_ids
                                                      and f[0] == doc.instruction_ids[5])]
        rng.shuffle(facts)
        for name, code in facts[:extra_questions]:
            if rng.random() < restate:  # "the code of NAME is" + the code: plain induction, learned first
                ids += restate_prefix + [name, toy_tasks.IDS["is"]]
                row_spans.append((len(ids) - 1, len(ids) + len(code)))
                ids += code + [toy_tasks.IDS["."]]
            else:
                ids += ask + [name, toy_tasks.IDS["?"]]
                row_spans.append((len(ids) - 1, len(ids) + len(code) + 1))
                ids += code + [toy_tasks.IDS["."], toy_tasks.EOS]
        rows.append(ids)
        spans.append(row_spans)
    T = max(len(r) for r in rows)
    ids = torch.zeros(batch, T, dtype=torch.int64)
    answer = torch.zeros(batch, T - 1, dtype=torch.bool)
    document = torch.zeros(batch, T - 1, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
        for begin, end in spans[b]:
            answer[b, begin:end] = True
        document[b, :length - 1] = True
    return ids, answer, document


@torch.no_grad()
def greedy_answers(model, docs: list) -> list[list[int]]:
    """Greedy answers (len(answer) tokens) of documents of one length, batched, full forward per step."""
    prompts = [d.ids + d.instruction_ids for d in docs]
    steps = max(len(d.answer_ids) for d in docs)
    out = [[] for _ in docs]
    # prompts may differ in length (instructions differ): group by length
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for members in groups.values():
        ids = torch.tensor([prompts[i] for i in members])
        for _ in range(steps):
            nxt = model(ids)[:, -1].argmax(-1)
            ids = torch.cat((ids, nxt[:, None]), 1)
        for row, i in enumerate(members):
            out[i] = ids[row, len(prompts[i]):].tolist()
    return out


def evaluate(model, tasks: list[str], length: int, count: int, batch: int = 16) -> dict[str, float]:
    """Fraction of held-out documents (seeds EVAL_SEED_BASE + i) answered exactly, per task."""
    scores = {}
    for task in tasks:
        facts = min(toy_tasks.DEFAULT_FACTS, max(1, (length - 1) // 24))  # 8 from 193 tokens on
        docs = [toy_tasks.make_document(task, length, EVAL_SEED_BASE + i, facts) for i in range(count)]
        correct = 0
        for start in range(0, count, batch):
            part = docs[start:start + batch]
            for d, answer in zip(part, greedy_answers(model, part)):
                correct += answer[:len(d.answer_ids)] == d.answer_ids
        scores[task] = correct / count
    return scores


def build_config(args) -> LlamaConfig:
    extra = {}
    if args.residual == "block":
        extra.update(attn_res_mode="block", attn_res_block_size=args.block_size)
    if args.mixers:
        layout, variant = args.mixers.split(":")
        extra["token_mixers"] = {"layout": layout, "variant": variant}
        if variant == "approximate":
            extra["approximate_order2"] = args.approximate_order2
    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                         vocab_size=len(toy_tasks.VOCABULARY), rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, max_position_embeddings=args.max_positions, **extra)
    config.validate()
    return config


def export(model: ToyModel, folder: Path, metadata: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict("float32")
    config.update(bos_token_id=toy_tasks.BOS, eos_token_id=toy_tasks.EOS)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(folder / "model.safetensors", model.state_dict_hf(), "F32",
                      {"format": "pt", "generator": "pith tools/toy_train.py"})
    toy_tasks.write_vocabulary(folder / "vocab.json")
    (folder / "training.json").write_text(json.dumps(metadata, indent=2) + "\n")


@torch.no_grad()
def check_export(model: ToyModel, folder: Path) -> float:
    """Largest |logit| difference between the module and pith_reference on the written files."""
    config, weights = load_checkpoint(folder)
    doc = toy_tasks.make_document("kv", 200, EVAL_SEED_BASE + 999)
    ids = doc.ids + doc.instruction_ids
    reference = reference_forward(weights, config, ids)
    mine = model(torch.tensor([ids]))[0]
    return float((reference - mine).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="model folder to write")
    parser.add_argument("--check", type=Path, help="only evaluate an exported model folder")
    parser.add_argument("--init-from", type=Path, help="start from the weights of an exported model folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--residual", choices=("standard", "block"), default="standard")
    parser.add_argument("--block-size", type=int, default=2)
    parser.add_argument("--mixers", help="LAYOUT:VARIANT, e.g. even:approximate")
    parser.add_argument("--approximate-order2", default="outer")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--max-positions", type=int, default=2048)
    parser.add_argument("--tasks", default="kv,passkey,hop")
    parser.add_argument("--task-weights", default="2,1,1")
    parser.add_argument("--curriculum", type=float, default=0.35,
                        help="fraction of the time budget spent on short documents first")
    parser.add_argument("--short-min-length", type=int, default=24)
    parser.add_argument("--short-max-length", type=int, default=128)
    parser.add_argument("--min-length", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--eval-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--lm-weight", type=float, default=0.1)
    parser.add_argument("--extra-questions", type=int, default=8)
    parser.add_argument("--restate", type=float, default=0.5,
                        help="probability that an extra question is the restatement 'the code of NAME is' (halved after the curriculum)")
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-count", type=int, default=64)
    parser.add_argument("--final-eval-count", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-embedding", type=float, default=1.0,
                        help="initial shared component of the embeddings, relative to a token's own part")
    parser.add_argument("--verbose", action="store_true", help="print sample kv answers at every evaluation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")

    if args.check:
        model = load_module(args.check)
        print(json.dumps(evaluate(model, tasks, args.eval_length, args.final_eval_count)))
        return

    torch.manual_seed(args.seed)
    if args.init_from:  # continue training a written model (its config wins over the size flags)
        model = load_module(args.init_from, args.seed)
        config = model.config
    else:
        config = build_config(args)
        model = ToyModel(config, args.seed, args.shared_embedding)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"config {json.dumps(config.to_hf_dict())}\n{parameters} parameters ({parameters * 4 / 2**20:.2f} MiB F32)",
          flush=True)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    rng = random.Random(args.seed)
    weights = [float(x) for x in args.task_weights.split(",")]
    # The budget is this process's CPU time (one thread: its compute time), so a job paused or slowed
    # by other work on the machine still gets its full schedule; wall-clock minutes are reported too.
    start, cpu_start = time.time(), time.process_time()
    budget = args.minutes * 60
    counter, step, history = 0, 0, []
    smoothed = None
    while step < args.steps:
        elapsed = time.process_time() - cpu_start
        if elapsed > budget:
            break
        # cosine schedule over the time budget (the step count is unknown in advance)
        progress = min(1.0, elapsed / budget)
        lr = learning_rate(args.lr, step, args.warmup, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        short = progress < args.curriculum
        length = rng.randint(args.short_min_length, args.short_max_length) if short else \
            rng.randint(args.min_length, args.max_length)
        ids, answer, document = make_batch(rng, tasks, weights, length, args.batch, counter, args.seed,
                                           args.extra_questions, args.restate if short else args.restate / 2)
        counter += args.batch
        answer_loss, lm_loss = train_step(model, optimizer, ids, answer, document, args.lm_weight)
        step += 1
        smoothed = answer_loss if smoothed is None else 0.95 * smoothed + 0.05 * answer_loss
        if step % 25 == 0:
            print(f"step {step} {elapsed / 60:.1f} cpu min lr {lr:.2e} answer loss {smoothed:.4f} lm loss {lm_loss:.3f}",
                  flush=True)
        if step % args.eval_every == 0:
            model.eval()
            eval_length = args.short_max_length if short else args.eval_length
            scores = {"length": eval_length, **evaluate(model, tasks, eval_length, args.eval_count)}
            model.train()
            history.append({"step": step, "cpu_minutes": round((time.process_time() - cpu_start) / 60, 2),
                            "wall_minutes": round((time.time() - start) / 60, 2), **scores})
            print(f"eval {json.dumps(history[-1])}", flush=True)
            if args.verbose:
                facts = min(toy_tasks.DEFAULT_FACTS, max(1, (eval_length - 1) // 24))
                sample = [toy_tasks.make_document("kv", eval_length, EVAL_SEED_BASE + i, facts) for i in range(3)]
                for d, a in zip(sample, greedy_answers(model, sample)):
                    words = " ".join(toy_tasks.VOCABULARY[t] for t in a)
                    facts = " ".join(f"{toy_tasks.VOCABULARY[n]}:{''.join(toy_tasks.VOCABULARY[x] for x in c)}"
                                     for n, c in kv_facts(d))
                    print(f"  {' '.join(d.instruction)} -> {words} | {facts}", flush=True)
    train_minutes, train_cpu_minutes = (time.time() - start) / 60, (time.process_time() - cpu_start) / 60
    model.eval()
    final = evaluate(model, tasks, args.eval_length, args.final_eval_count)
    print(f"final ({args.final_eval_count} held-out documents of {args.eval_length} tokens per task): {json.dumps(final)}",
          flush=True)
    if args.out:
        metadata = {"command": "/usr/bin/python3 tools/toy_train.py " + " ".join(sys.argv[1:]), "seed": args.seed,
                    "steps": step, "training_minutes": round(train_minutes, 1),
                    "training_cpu_minutes": round(train_cpu_minutes, 1), "threads": args.threads,
                    "parameters": parameters, "torch": torch.__version__,
                    "python_eval": {"length": args.eval_length, "documents_per_task": args.final_eval_count,
                                    "eval_seeds": f"{EVAL_SEED_BASE}..{EVAL_SEED_BASE + args.final_eval_count - 1}",
                                    **final},
                    "history": history}
        if args.init_from and (args.init_from / "training.json").exists():
            metadata["continued_from"] = json.loads((args.init_from / "training.json").read_text())
        export(model, args.out, metadata)
        difference = check_export(model, args.out)
        print(f"wrote {args.out}; module vs pith_reference on the written files: max |logit diff| {difference:.2e}")
        if difference > EXPORT_TOLERANCE:
            raise SystemExit("export check failed")


if __name__ == "__main__":
    main()
