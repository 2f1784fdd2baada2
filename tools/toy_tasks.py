# SPDX-License-Identifier: MIT
"""Synthetic long-document retrieval tasks for pith's toy checkpoints; the same documents in C++.

include/pith/runtime/toy_tasks.hpp implements this specification token for token; the golden
tests/data/toy/documents.json (written by `main()` below) holds a few documents both sides must
reproduce. Everything is a function of (task, length, seed, facts).

SPECIFICATION

Vocabulary (`VOCABULARY`, ids = index; written as vocab.json in pith's "pith-words" format, unk 0,
bos 1, eos 2): "<unk>" "<s>" "</s>", the punctuation "." "," "?", the digits "0".."9", the task
words "the" "code" "of" "is" "what" "pass" "key" "remember" "it" "keeps" "that" "a" "and", then
NAMES (32), NOUNS (32), ADJECTIVES (24), VERBS (24), PREPOSITIONS (8), ADVERBS (8), in the order
listed below. 157 tokens.

Random numbers: splitmix64. state = seed (uint64); next(): state += 0x9E3779B97F4A7C15;
z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
return z ^ (z >> 31) (all mod 2^64). below(n) = next() % n. pick(list) = list[below(len(list))].
digits(c) = c draws of below(10), as the tokens "0".."9".

A document of `length` tokens is BOS followed by length - 1 words. The generator starts from
state = seed XOR salt(task), salt = 0 (passkey), 0x6B76000000000000 (kv), 0x686F700000000000 (hop),
so the three tasks do not share filler for the same seed. Draws, in this order:
1. the facts (sentences of words) and the question:
   - passkey: p = digits(5); facts = [the pass key is p . remember it .] (13 words);
     instruction = [what is the pass key ?]; answer = p + [.].
   - kv: F = `facts` (default 8, 1 <= F <= 32) distinct names: a partial Fisher-Yates shuffle of
     a copy of NAMES, for i in 0..F-1: j = i + below(32 - i), swap(names[i], names[j]), take
     names[0..F-1]; then for each name in that order its code c_i = digits(4);
     fact i = [the code of NAME_i is c_i .] (10 words); q = below(F);
     instruction = [what is the code of NAME_q ?]; answer = c_q + [.].
   - hop (two facts needed): as kv with F + 1 distinct names drawn by the same shuffle (the last
     one, LINK, has no code), codes for the first F names, then q = below(F); the facts are the F
     kv facts followed by [LINK keeps the code of NAME_q .] (7 words);
     instruction = [what is the code that LINK keeps ?]; answer = c_q + [.].
2. positions: filler = (length - 1) - (total words of the facts); an error if negative. For each
   fact in order, o_i = below(filler + 1); the o_i are sorted ascending and the i-th smallest
   goes to fact i (so the facts keep their order in the document).
3. filler words: whole sentences appended until there are at least `filler` words, then cut to
   exactly `filler` words (the last sentence may end early). A sentence: t = below(5), then the
   template t with each slot drawn left to right by pick():
     0: the ADJ NOUN VERB the NOUN .
     1: the NOUN VERB the ADJ NOUN PREP the NOUN .
     2: ADV , the NOUN VERB PREP the ADJ NOUN .
     3: the NOUN and the NOUN VERB a NOUN .
     4: a ADJ NOUN VERB the ADJ NOUN .
4. assembly: sentence boundaries of the filler are the word indices b with b == 0 or
   filler_words[b - 1] == "."; fact i goes before filler word b_i, the smallest boundary >= o_i
   (b_i = filler if there is none); facts at the same boundary keep their order.
The text is the words joined by single spaces (pith's word tokenizer encodes it back to the same ids).
The benchmark and the training use disjoint seeds: held-out evaluation seeds are < 2^32, training
seeds >= 2^40 (tools/toy_train.py).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

MASK64 = (1 << 64) - 1
SPECIALS = ["<unk>", "<s>", "</s>"]
PUNCTUATION = [".", ",", "?"]
DIGITS = [str(d) for d in range(10)]
TASK_WORDS = ["the", "code", "of", "is", "what", "pass", "key", "remember", "it", "keeps", "that", "a", "and"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl", "liam",
         "mona", "nina", "oscar", "peggy", "quinn", "rosa", "sam", "tara", "uma", "victor", "wendy", "xena",
         "yuri", "zoe", "adam", "bella", "chris", "dora", "eli", "fiona"]
NOUNS = ["cat", "dog", "bird", "fish", "horse", "river", "tree", "stone", "house", "garden", "road", "field",
         "forest", "lake", "cloud", "star", "moon", "sun", "boat", "ship", "train", "book", "letter", "song",
         "dream", "city", "village", "hill", "bridge", "tower", "lamp", "door"]
ADJECTIVES = ["red", "green", "blue", "small", "large", "old", "young", "quiet", "loud", "bright", "dark", "warm",
              "cold", "soft", "hard", "quick", "slow", "happy", "sad", "calm", "wild", "gentle", "brave", "tall"]
VERBS = ["sees", "finds", "follows", "likes", "watches", "carries", "paints", "builds", "opens", "closes",
         "crosses", "visits", "reaches", "leaves", "holds", "moves", "pulls", "pushes", "meets", "guards",
         "calls", "helps", "hides", "shows"]
PREPOSITIONS = ["near", "under", "over", "behind", "beside", "across", "through", "around"]
ADVERBS = ["today", "yesterday", "often", "sometimes", "slowly", "quickly", "later", "soon"]
VOCABULARY = SPECIALS + PUNCTUATION + DIGITS + TASK_WORDS + NAMES + NOUNS + ADJECTIVES + VERBS + PREPOSITIONS + ADVERBS
IDS = {word: i for i, word in enumerate(VOCABULARY)}
BOS, EOS = 1, 2
TASKS = ("passkey", "kv", "hop")
SALTS = {"passkey": 0, "kv": 0x6B76000000000000, "hop": 0x686F700000000000}
DEFAULT_FACTS = 8
MAX_FACTS = 32

SLOTS = {"ADJ": ADJECTIVES, "NOUN": NOUNS, "VERB": VERBS, "PREP": PREPOSITIONS, "ADV": ADVERBS}
TEMPLATES = [
    "the ADJ NOUN VERB the NOUN .",
    "the NOUN VERB the ADJ NOUN PREP the NOUN .",
    "ADV , the NOUN VERB PREP the ADJ NOUN .",
    "the NOUN and the NOUN VERB a NOUN .",
    "a ADJ NOUN VERB the ADJ NOUN .",
]


class SplitMix64:
    """splitmix64 (Steele, Lea, Flood 2014), the generator both languages use."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.next() % n

    def pick(self, items: list[str]) -> str:
        return items[self.below(len(items))]

    def digits(self, count: int) -> list[str]:
        return [DIGITS[self.below(10)] for _ in range(count)]


@dataclass
class Document:
    task: str
    length: int
    seed: int
    words: list[str]          # the document's words, BOS excluded (length - 1 of them)
    instruction: list[str]
    answer: list[str]
    fact_offsets: list[int]   # index in `ids` (BOS counted) where each fact starts, in fact order

    @property
    def ids(self) -> list[int]:
        """BOS + the document's token ids (length of them)."""
        return [BOS] + [IDS[w] for w in self.words]

    @property
    def instruction_ids(self) -> list[int]:
        return [IDS[w] for w in self.instruction]

    @property
    def answer_ids(self) -> list[int]:
        return [IDS[w] for w in self.answer]

    @property
    def text(self) -> str:
        return " ".join(self.words)


def sentence(rng: SplitMix64) -> list[str]:
    template = TEMPLATES[rng.below(len(TEMPLATES))]
    return [rng.pick(SLOTS[slot]) if slot in SLOTS else slot for slot in template.split()]


def draw_names(rng: SplitMix64, count: int) -> list[str]:
    names = list(NAMES)
    for i in range(count):
        j = i + rng.below(len(names) - i)
        names[i], names[j] = names[j], names[i]
    return names[:count]


def make_document(task: str, length: int, seed: int, facts: int = DEFAULT_FACTS) -> Document:
    """The document of the specification above."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    if not 1 <= facts <= MAX_FACTS - (task == "hop"):
        raise ValueError(f"facts must be in 1..{MAX_FACTS - (task == 'hop')}")
    rng = SplitMix64(seed ^ SALTS[task])
    if task == "passkey":
        key = rng.digits(5)
        fact_list = [["the", "pass", "key", "is", *key, ".", "remember", "it", "."]]
        instruction, answer = ["what", "is", "the", "pass", "key", "?"], key + ["."]
    else:
        names = draw_names(rng, facts + (task == "hop"))
        codes = [rng.digits(4) for _ in range(facts)]
        q = rng.below(facts)
        fact_list = [["the", "code", "of", names[i], "is", *codes[i], "."] for i in range(facts)]
        if task == "kv":
            instruction = ["what", "is", "the", "code", "of", names[q], "?"]
        else:
            link = names[facts]
            fact_list.append([link, "keeps", "the", "code", "of", names[q], "."])
            instruction = ["what", "is", "the", "code", "that", link, "keeps", "?"]
        answer = codes[q] + ["."]
    filler_count = (length - 1) - sum(len(f) for f in fact_list)
    if filler_count < 0:
        raise ValueError(f"length {length} is too short for the {task} facts")
    offsets = sorted(rng.below(filler_count + 1) for _ in fact_list)
    filler: list[str] = []
    while len(filler) < filler_count:
        filler += sentence(rng)
    del filler[filler_count:]
    words: list[str] = []
    fact_offsets: list[int] = []
    next_fact = 0
    for b in range(filler_count + 1):
        is_boundary = b == filler_count or b == 0 or filler[b - 1] == "."
        while is_boundary and next_fact < len(fact_list) and (offsets[next_fact] <= b or b == filler_count):
            fact_offsets.append(len(words) + 1)
            words += fact_list[next_fact]
            next_fact += 1
        if b < filler_count:
            words.append(filler[b])
    assert len(words) == length - 1
    return Document(task, length, seed, words, instruction, answer, fact_offsets)


def vocabulary_json() -> dict:
    return {"type": "pith-words", "tokens": VOCABULARY, "unk": 0, "bos": BOS, "eos": EOS}


def write_vocabulary(path: Path) -> None:
    Path(path).write_text(json.dumps(vocabulary_json(), indent=1) + "\n")


# The golden documents the C++ test compares against (task, length, seed, facts).
GOLDEN_CASES = [
    ("passkey", 64, 0, DEFAULT_FACTS), ("passkey", 200, 12345, DEFAULT_FACTS), ("kv", 100, 1, DEFAULT_FACTS),
    ("kv", 300, 2**40 + 7, DEFAULT_FACTS), ("kv", 40, 3, 2), ("kv", 11, 9, 1), ("hop", 120, 4, DEFAULT_FACTS),
    ("hop", 500, 0xFFFFFFFFFFFFFFFF, 5), ("passkey", 14, 77, DEFAULT_FACTS),
]


def golden() -> dict:
    rng = SplitMix64(0)
    first = [rng.next() for _ in range(4)]
    cases = []
    for task, length, seed, facts in GOLDEN_CASES:
        d = make_document(task, length, seed, facts)
        cases.append({"task": task, "length": length, "seed": str(seed), "facts": facts, "ids": d.ids,
                      "instruction": d.instruction_ids, "answer": d.answer_ids, "fact_offsets": d.fact_offsets})
    return {"splitmix64_seed0_first4": [str(v) for v in first], "vocabulary": VOCABULARY, "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--golden", type=Path, default=Path(__file__).resolve().parent.parent / "tests/data/toy/documents.json",
                        help="where to write the golden documents")
    parser.add_argument("--show", nargs=3, metavar=("TASK", "LENGTH", "SEED"), help="print one document and its question")
    args = parser.parse_args()
    if args.show:
        d = make_document(args.show[0], int(args.show[1]), int(args.show[2]))
        print(d.text)
        print("instruction:", " ".join(d.instruction))
        print("answer:", " ".join(d.answer))
        return
    args.golden.parent.mkdir(parents=True, exist_ok=True)
    data = golden()
    lines = ['{"splitmix64_seed0_first4": ' + json.dumps(data["splitmix64_seed0_first4"]) + ",",
             ' "vocabulary": ' + json.dumps(data["vocabulary"]) + ",", ' "cases": [']
    lines += ["  " + json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(data["cases"]) else "")
              for i, c in enumerate(data["cases"])]
    lines += [" ]", "}"]
    args.golden.write_text("\n".join(lines) + "\n")
    write_vocabulary(args.golden.parent / "vocab.json")
    print(f"wrote {args.golden} ({len(data['cases'])} documents) and {args.golden.parent / 'vocab.json'}")


if __name__ == "__main__":
    main()
