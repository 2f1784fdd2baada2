# SPDX-License-Identifier: MIT
"""Trains examples/models/toy-ruler: a toy model that reads RULER-format documents (tools/ruler_tasks.py).

    /usr/bin/python3 tools/ruler_train.py --out examples/models/toy-ruler --minutes 60
    /usr/bin/python3 tools/ruler_train.py --check examples/models/toy-ruler   # accuracy of a written model
    /usr/bin/python3 tools/ruler_train.py --vectors tests/data/ruler/toy_ruler_ids.json  # tokenizer vectors

The vocabulary (`build_vocabulary`) is a pith-words vocabulary (include/pith/io/tokenizer_words.hpp)
with lowercase folding, WordPiece-style continuation pieces and "-" as a joiner: every word the
generators of ruler_tasks.py draw from a list (the filler grammar, the noise haystack, the needles,
the preambles and questions) is one token; any other word (7-digit values, UUID pieces, vt variables,
the coded words of cwe and fwe) is spelled as its first character followed by "##c" pieces, so "1234567"
is "1 ##2 ##3 ##4 ##5 ##6 ##7" and decodes back without spaces. `WordVocabulary` below is the Python
twin of the C++ tokenizer on these files; tests/data/ruler/toy_ruler_ids.json holds vectors both agree on.

A training sequence is BOS + document + question + answer prefix + " " + answer + EOS, the answer being
RULER's gold strings joined by ", " and a final "."; niah documents with several needles (multikey,
multivalue, multiquery, and the needle haystacks of multikey_2/3) add up to --extra-questions further
singular questions about other needles, each answered and ended with EOS. The loss is the answer and EOS
tokens' cross-entropy (--restate: some extra questions are a needle's own opening, answered by its
value) plus --lm-weight times the next-token loss over the document. Document lengths:
--short-min/max-length tokens during the first --curriculum fraction of the CPU-time budget, then
--min/max-length (at least 1,024). --dense-needles N adds a training-only task, niah_multikey_1 with N
needles (with --extra-questions N - 1 every needle is asked), for recipes that want more key-matching
targets per document; --recall-weight W adds niah_recall (recall_document: needles without a haystack,
1 to length / 20 of them). The model class, initialisation, optimiser and schedule are
tools/toy_train.py's. Training seeds are 2^40 + (run seed << 24) + counter; evaluation seeds
2^20 + i, so no evaluation document was seen in training. --minutes bounds the CPU time of all
--threads and sets the learning-rate schedule; --max-steps ends a stage early without changing it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import string
import sys
import time
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
if __name__ == "__main__" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    # glibc serves every block above its mmap threshold (at most 32 MB) with a fresh mapping and
    # returns it on free, so each step's attention tensors (batch x heads x T^2 floats, 50-100 MB)
    # are page-faulted and zeroed anew: with 1,000-token documents most of the CPU time went to
    # the kernel. Keeping them in the heap made a training step 4.3x cheaper (3.3 against 14.3 CPU s,
    # 16 sequences of 604 tokens). The variables are read at process start, hence the re-exec.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 32)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 34)
    os.execv(sys.executable, [sys.executable] + sys.argv)
import ctypes  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ruler_tasks  # noqa: E402
from pith_reference import LlamaConfig, forward as reference_forward, load_checkpoint  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402
from toy_train import (EXPORT_TOLERANCE, ToyModel, learning_rate, load_module, make_optimizer,  # noqa: E402
                       train_step)

TRAIN_SEED_BASE = 1 << 40
EVAL_SEED_BASE = 1 << 20
UNK, BOS, EOS = 0, 1, 2
CONTINUATION = "##"
JOINERS = "-"
PUNCTUATION = string.punctuation  # the 32 ASCII punctuation characters, each a token
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # pith folds A-Z only
DENSE = "niah_multikey_dense"  # training only (--dense-needles)
RECALL = "niah_recall"  # training only (--recall-weight): needles without a haystack
TRIM_EVERY = 25  # steps between two release_free_memory() calls


def release_free_memory() -> None:
    """Returns the heap's free pages to the system (glibc's malloc_trim): with the trim threshold
    raised above, the heap otherwise never shrinks. It does not bound all of the growth seen: a
    1,024-1,280-token stage reached 15 GB resident without it, and a stage with it still reached
    about 16 GB (resident plus swap) on 100-400-token documents, both with the full T x T attention
    of the time. With toy_train's blocked causal_attention, two 1,024-1,280-token stages run side by
    side were at 0.9-3.0 GB resident each when sampled at steps 300-700."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


NEEDLE_RE = re.compile(r"One of the special magic (number|uuid)s for (\S+) is: (\S+)\.")


def build_vocabulary() -> list[str]:
    """Special tokens, punctuation, characters and their continuation pieces, then every listed word.

    The listed words: ruler_tasks.py's word lists, and every word that appears in all of three seeds'
    documents and instructions of a task (the fixed text: noise, needle, preambles, questions; drawn
    values differ between seeds). Words holding a digit are left to the character pieces."""
    characters = string.ascii_lowercase + string.digits
    tokens = ["<unk>", "<s>", "</s>"] + list(PUNCTUATION) + list(characters) + [CONTINUATION + c for c in characters]
    words: set[str] = set()
    for items in (ruler_tasks.ADJECTIVES, ruler_tasks.NOUNS, ruler_tasks.VERBS, ruler_tasks.PREPOSITIONS,
                  ruler_tasks.ADVERBS):
        words.update(w.lower() for w in items)
    for template in ruler_tasks.FILLER_TEMPLATES:
        words.update(split_words(re.sub(r"\{[A-Z+]+\}", " ", template).lower()))
    for task in ruler_tasks.TASKS:
        seen = []
        for seed in (11, 12, 13):
            d = ruler_tasks.make_document_units(task, ruler_tasks.min_units(task) + 8, seed, 2000)
            seen.append(set(split_words((d.document + " " + d.instruction).lower())))
        words.update(set.intersection(*seen))
    words = {w for w in words if not any(c.isdigit() for c in w)} - set(tokens)
    return tokens + sorted(words)


def split_words(text: str) -> list[str]:
    """pith-words splitting: ASCII whitespace separates, each ASCII punctuation character is a token."""
    out, word = [], []
    for c in text:
        if c in " \t\n\r\f\v":
            if word:
                out.append("".join(word))
                word = []
        elif c in PUNCTUATION:
            if word:
                out.append("".join(word))
                word = []
            out.append(c)
        else:
            word.append(c)
    if word:
        out.append("".join(word))
    return out


class WordVocabulary:
    """Python twin of pith::word_tokenizer for a "pith-words" file with lowercase, continuation and joiners."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.cache: dict[str, list[int]] = {}

    def word(self, word: str) -> list[int]:
        found = self.cache.get(word)
        if found is not None:
            return found
        if word in self.ids and self.ids[word] not in (UNK, BOS, EOS):
            out = [self.ids[word]]
        else:
            pieces = [word[0]] + [CONTINUATION + c for c in word[1:]]
            out = [self.ids[p] for p in pieces] if all(p in self.ids for p in pieces) and word.isascii() else [UNK]
        self.cache[word] = out
        return out

    def encode(self, text: str, bos: bool = False) -> list[int]:
        out = [BOS] if bos else []
        for word in split_words(text.translate(ASCII_LOWER)):
            out += self.word(word)
        return out

    def decode(self, ids: list[int], previous: int = -1) -> str:
        out = []
        for token in ids:
            if token in (BOS, EOS):
                previous = token
                continue
            text = self.tokens[token]
            first = previous < 0 or previous == BOS
            if text.startswith(CONTINUATION) and len(text) > len(CONTINUATION):
                out.append(text[len(CONTINUATION):])
            elif first or (len(text) == 1 and text in ".,!?;:)]}%'" + JOINERS) or \
                    (self.tokens[previous] in ("(", "[", "{", "'") or self.tokens[previous] in JOINERS):
                out.append(text)
            else:
                out.append(" " + text)
            previous = token
        return "".join(out)

    def json(self) -> dict:
        return {"type": "pith-words", "tokens": self.tokens, "unk": UNK, "bos": BOS, "eos": EOS, "lowercase": True,
                "continuation": CONTINUATION, "joiners": JOINERS}


def answer_text(gold: list[str]) -> str:
    return " " + ", ".join(gold) + "."


def singular_question(kind: str, key: str) -> str:
    return (f"What is the special magic {kind} for {key} mentioned in the provided text? The special magic {kind} "
            f"for {key} mentioned in the provided text is")


class Sampler:
    """Training documents of about a requested length in tokens (units estimated from a measured rate)."""

    def __init__(self, vocab: WordVocabulary, tasks=ruler_tasks.TASKS):
        self.vocab = vocab
        self.rate = {}
        for task in tasks:
            units = ruler_tasks.min_units(task) + 200
            d = ruler_tasks.make_document_units(task, units, 3, 2000)
            base = ruler_tasks.make_document_units(task, ruler_tasks.min_units(task), 3, 2000)
            grown = len(vocab.encode(d.document)) - len(vocab.encode(base.document))
            self.rate[task] = (grown / 200, len(vocab.encode(base.document)))

    def document(self, task: str, length: int, seed: int):
        per_unit, base = self.rate[task]
        units = max(ruler_tasks.min_units(task), ruler_tasks.min_units(task) + int((length - base) / per_unit))
        return ruler_tasks.make_document_units(task, units, seed, length)


def recall_document(length: int, seed: int) -> ruler_tasks.Document:
    """A training-only niah document without a haystack: the multi-needle preamble, then 1 to
    length / 20 needles (uniform; a needle is about 20 tokens) "One of the special magic numbers for
    ADJECTIVE-NOUN is: VALUE." with distinct keys, one of them asked. Documents with one or two needles
    reward copying a value at all, those with more reward matching the key; make_sequence asks the
    other needles as extra questions, so a step carries many targets."""
    rng = random.Random(seed)
    count = rng.randint(1, max(1, length // 20))
    keys: list[str] = []
    while len(keys) < count:
        key = rng.choice(ruler_tasks.ADJECTIVES) + "-" + rng.choice(ruler_tasks.NOUNS)
        if key not in keys:
            keys.append(key)
    values = [str(rng.randrange(1000000, 10000000)) for _ in keys]
    needles = " ".join(ruler_tasks.NEEDLE.format(t="number", key=k, value=v) for k, v in zip(keys, values))
    asked = rng.randrange(count)
    preamble = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. "
                "I will quiz you about the numbers afterwards.\n")
    question = f"What is the special magic number for {keys[asked]} mentioned in the provided text?"
    prefix = f" The special magic number for {keys[asked]} mentioned in the provided text is"
    return ruler_tasks.Document(RECALL, length, seed, None, 0, count, preamble + needles + "\n", question, prefix,
                                [values[asked]])


def make_sequence(vocab: WordVocabulary, d, rng: random.Random, extra_questions: int, restate: float):
    """(ids, answer spans) of one training sequence: with probability `restate` an extra question is
    instead the needle's own opening ("One of the special magic numbers for KEY is:") followed by its
    value, a plain induction target that the model learns first (the asked needle's too)."""
    ids = vocab.encode(d.document, bos=True) + vocab.encode(d.instruction)
    answer = vocab.encode(answer_text(d.gold)) + [EOS]
    spans = [(len(ids) - 1, len(ids) - 1 + len(answer))]
    ids += answer
    if d.task.startswith("niah"):
        needles = NEEDLE_RE.findall(d.document)
        keys: dict[str, list[tuple[str, str]]] = {}
        for kind, key, value in needles:
            keys.setdefault(key, []).append((kind, value))
        single = [(key, v[0]) for key, v in keys.items() if len(v) == 1]
        rng.shuffle(single)
        for key, (kind, value) in single[:extra_questions]:
            if rng.random() < restate:
                ids += vocab.encode(f" One of the special magic {kind}s for {key} is:")
            elif value in d.gold:
                continue  # the first question asked it already
            else:
                ids += vocab.encode(singular_question(kind, key))
            answer = vocab.encode(answer_text([value])) + [EOS]
            spans.append((len(ids) - 1, len(ids) - 1 + len(answer)))
            ids += answer
    return ids, spans


def make_batch(vocab, sampler, rng, tasks, weights, length, batch, counter, run_seed, extra_questions, restate):
    rows, spans, lengths = [], [], []
    i = 0
    while len(rows) < batch:
        task = rng.choices(tasks, weights)[0]
        seed = TRAIN_SEED_BASE + (run_seed << 24) + counter + i
        i += 1
        try:
            d = recall_document(length, seed) if task == RECALL else sampler.document(task, length, seed)
        except ValueError:  # fwe at a length too short to rank its words
            continue
        row, row_spans = make_sequence(vocab, d, rng, extra_questions, restate)
        rows.append(row)
        spans.append(row_spans)
        lengths.append(row_spans[0][0] - len(vocab.encode(d.instruction)) + 1)
    T = max(len(r) for r in rows)
    ids = torch.zeros(batch, T, dtype=torch.int64)
    answer = torch.zeros(batch, T - 1, dtype=torch.bool)
    document = torch.zeros(batch, T - 1, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
        for begin, end in spans[b]:
            answer[b, begin:end] = True
        document[b, :lengths[b] - 1] = True
    return ids, answer, document, i


@torch.no_grad()
def greedy(model, prompts: list[list[int]], steps: int) -> list[list[int]]:
    """Greedy continuations (up to EOS or `steps` tokens), batched by prompt length, full forward per step."""
    out = [[] for _ in prompts]
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for members in groups.values():
        ids = torch.tensor([prompts[i] for i in members])
        for _ in range(steps):
            nxt = model(ids)[:, -1].argmax(-1)
            ids = torch.cat((ids, nxt[:, None]), 1)
            if all(EOS in row[len(prompts[members[0]]):].tolist() for row in ids):
                break
        for row, i in enumerate(members):
            answer = ids[row, len(prompts[i]):].tolist()
            out[i] = answer[:answer.index(EOS)] if EOS in answer else answer
    return out


def evaluate(model, vocab: WordVocabulary, tasks: list[str], length: int, count: int, batch: int = 16) -> dict:
    """RULER's string_match_all over held-out documents of `length` tokens, per task."""
    scores = {}
    counter = lambda text: len(vocab.encode(text, bos=True))  # noqa: E731
    for task in tasks:
        docs = [ruler_tasks.make_document(task, length, EVAL_SEED_BASE + i, counter) for i in range(count)]
        total = 0.0
        steps = max(len(vocab.encode(answer_text(d.gold))) for d in docs) + 2
        for start in range(0, count, batch):
            part = docs[start:start + batch]
            prompts = [vocab.encode(d.document, bos=True) + vocab.encode(d.instruction) for d in part]
            for d, p, a in zip(part, prompts, greedy(model, prompts, steps)):
                total += ruler_tasks.string_match_all(vocab.decode(a, p[-1]), d.gold)
            release_free_memory()
        scores[task] = round(total / count, 4)
    return scores


def build_config(args, vocab_size: int) -> LlamaConfig:
    config = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                         vocab_size=vocab_size, rms_norm_eps=1e-5, rope_theta=args.rope_theta,
                         tie_word_embeddings=False, max_position_embeddings=args.max_positions)
    config.validate()
    return config


def export(model: ToyModel, vocab: WordVocabulary, folder: Path, metadata: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict("float32")
    config.update(bos_token_id=BOS, eos_token_id=EOS)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(folder / "model.safetensors", model.state_dict_hf(), "F32",
                      {"format": "pt", "generator": "pith tools/ruler_train.py"})
    (folder / "vocab.json").write_text(json.dumps(vocab.json(), indent=1) + "\n")
    (folder / "training.json").write_text(json.dumps(metadata, indent=2) + "\n")


@torch.no_grad()
def check_export(model: ToyModel, vocab: WordVocabulary, folder: Path) -> float:
    config, weights = load_checkpoint(folder)
    d = ruler_tasks.make_document_units("niah_multikey_1", 10, EVAL_SEED_BASE + 999, 1000)
    ids = vocab.encode(d.document, bos=True) + vocab.encode(d.instruction)
    return float((reference_forward(weights, config, ids) - model(torch.tensor([ids]))[0]).abs().max())


def write_vectors(path: Path, vocab: WordVocabulary) -> None:
    """Token ids of RULER documents and answers in the toy-ruler vocabulary, for the C++ tokenizer test."""
    cases = []
    for i, task in enumerate(ruler_tasks.TASKS):
        d = ruler_tasks.make_document_units(task, ruler_tasks.min_units(task) + 3, 100 + i, 1000)
        for text in (d.document, d.instruction, answer_text(d.gold)):
            ids = vocab.encode(text)
            cases.append({"text": text, "ids": ids, "decoded": vocab.decode(ids)})
    extra = ["Hello, World!  It's 9 o'clock -- ABCDE = VAR XYZZY.", "UPPER lower MiXeD 0123456789 émigré",
             "a-b-c 3f2a9b1c-1234-4abc-8def-0123456789ab", ""]
    for text in extra:
        ids = vocab.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": vocab.decode(ids)})
    path.write_text(json.dumps({"generator": "tools/ruler_train.py --vectors", "vocabulary": vocab.json(),
                                "cases": cases}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--check", type=Path)
    parser.add_argument("--init-from", type=Path, help="continue training a written model (its config wins)")
    parser.add_argument("--vectors", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=24)
    parser.add_argument("--rope-theta", type=float, default=10000.0)
    parser.add_argument("--max-positions", type=int, default=2048)
    parser.add_argument("--tasks", default=",".join(ruler_tasks.TASKS))
    parser.add_argument("--task-weights", default="3,1,0.5,4,1.5,0.3,1,1,0.5,0.3,0.3")
    parser.add_argument("--curriculum", type=float, default=0.3)
    parser.add_argument("--short-min-length", type=int, default=96)
    parser.add_argument("--short-max-length", type=int, default=400)
    parser.add_argument("--min-length", type=int, default=1024)
    parser.add_argument("--max-length", type=int, default=1280)
    parser.add_argument("--eval-length", type=int, default=1000)
    parser.add_argument("--eval-tasks", default="niah_single_1,niah_multikey_1")
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--lm-weight", type=float, default=0.3)
    parser.add_argument("--extra-questions", type=int, default=6)
    parser.add_argument("--restate", type=float, default=0.5,
                        help="probability that an extra question is the needle's opening instead (halved after the curriculum)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--eval-count", type=int, default=32)
    parser.add_argument("--final-eval-count", type=int, default=200)
    parser.add_argument("--shared-embedding", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=0,
                        help="stop after this many steps (the schedule still spans --minutes): ends a stage whose "
                             "learning rate should not decay yet")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (--minutes counts all of their CPU time)")
    parser.add_argument("--recall-weight", type=float, default=0.0,
                        help="adds the training task niah_recall (needles without a haystack, every needle a "
                             "possible extra question) with this weight")
    parser.add_argument("--dense-needles", type=int, default=0,
                        help="adds the training task niah_multikey_dense: niah_multikey_1 with this many needles "
                             "(each a target of the extra questions)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vocab = WordVocabulary(build_vocabulary())
    if args.vectors:
        write_vectors(args.vectors, vocab)
        return
    eval_tasks = args.eval_tasks.split(",")
    if args.check:
        model = load_module(args.check)
        print(json.dumps(evaluate(model, vocab, eval_tasks, args.eval_length, args.final_eval_count)))
        return

    torch.manual_seed(args.seed)
    if args.init_from:
        model = load_module(args.init_from, args.seed)
    else:
        config = build_config(args, len(vocab.tokens))
        model = ToyModel(config, args.seed, args.shared_embedding)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"vocabulary {len(vocab.tokens)} tokens; {parameters} parameters ({parameters * 4 / 2**20:.2f} MiB F32)",
          flush=True)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    rng = random.Random(args.seed)
    tasks = args.tasks.split(",")
    weights = [float(x) for x in args.task_weights.split(",")]
    if args.dense_needles:
        ruler_tasks.NIAH[DENSE] = ruler_tasks.NIAH["niah_multikey_1"][:3] + (args.dense_needles, 1, 1)
    if args.recall_weight:
        tasks.append(RECALL)
        weights.append(args.recall_weight)
    sampler = Sampler(vocab, tuple(ruler_tasks.TASKS) + ((DENSE,) if args.dense_needles else ()))
    start, cpu_start = time.time(), time.process_time()
    budget = args.minutes * 60
    counter, step, history, smoothed = 0, 0, [], None
    while True:
        elapsed = time.process_time() - cpu_start
        if elapsed > budget or (args.max_steps and step >= args.max_steps):
            break
        progress = min(1.0, elapsed / budget)
        lr = learning_rate(args.lr, step, args.warmup, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        short = progress < args.curriculum
        length = rng.randint(args.short_min_length, args.short_max_length) if short else \
            rng.randint(args.min_length, args.max_length)
        batch = args.batch if not short else args.batch * 2
        ids, answer, document, used = make_batch(vocab, sampler, rng, tasks, weights, length, batch, counter,
                                                 args.seed, args.extra_questions,
                                                 args.restate if short else args.restate / 2)
        counter += used
        answer_loss, lm_loss = train_step(model, optimizer, ids, answer, document, args.lm_weight)
        step += 1
        smoothed = answer_loss if smoothed is None else 0.95 * smoothed + 0.05 * answer_loss
        if step % TRIM_EVERY == 0:
            release_free_memory()
        if step % 25 == 0:
            print(f"step {step} {elapsed / 60:.1f} cpu min len {length} lr {lr:.2e} answer loss {smoothed:.4f} "
                  f"lm loss {lm_loss:.3f}", flush=True)
        if step % args.eval_every == 0:
            model.eval()
            eval_length = args.short_max_length if short else args.eval_length
            scores = {"length": eval_length, **evaluate(model, vocab, eval_tasks, eval_length, args.eval_count)}
            model.train()
            history.append({"step": step, "cpu_minutes": round((time.process_time() - cpu_start) / 60, 2),
                            "wall_minutes": round((time.time() - start) / 60, 2), **scores})
            print(f"eval {json.dumps(history[-1])}", flush=True)
            if args.out:  # a usable checkpoint at every evaluation
                export(model, vocab, args.out, {"partial": True, "step": step, "history": history})
    train_minutes, train_cpu_minutes = (time.time() - start) / 60, (time.process_time() - cpu_start) / 60
    model.eval()
    final = evaluate(model, vocab, eval_tasks, args.eval_length, args.final_eval_count)
    print(f"final ({args.final_eval_count} held-out documents of {args.eval_length} tokens per task): "
          f"{json.dumps(final)}", flush=True)
    if args.out:
        metadata = {"command": "/usr/bin/python3 tools/ruler_train.py " + " ".join(sys.argv[1:]), "seed": args.seed,
                    "steps": step, "training_minutes": round(train_minutes, 1),
                    "training_cpu_minutes": round(train_cpu_minutes, 1), "threads": args.threads,
                    "parameters": parameters,
                    "vocabulary": len(vocab.tokens), "torch": torch.__version__,
                    "python_eval": {"length": args.eval_length, "documents_per_task": args.final_eval_count,
                                    "eval_seeds": f"{EVAL_SEED_BASE}..{EVAL_SEED_BASE + args.final_eval_count - 1}",
                                    **final},
                    "history": history}
        if args.init_from and (args.init_from / "training.json").exists():
            metadata["continued_from"] = json.loads((args.init_from / "training.json").read_text())
        export(model, vocab, args.out, metadata)
        difference = check_export(model, vocab, args.out)
        print(f"wrote {args.out}; module vs pith_reference on the written files: max |logit diff| {difference:.2e}")
        if difference > EXPORT_TOLERANCE:
            raise SystemExit("export check failed")


if __name__ == "__main__":
    main()
