# SPDX-License-Identifier: MIT
"""RULER's synthetic tasks (Hsieh et al. 2024) generated from a seed; the same texts in C++.

include/pith/runtime/ruler_tasks.hpp implements this specification character for character; the
vectors tests/data/ruler/documents.json (written by `main()` below, lengths counted in
whitespace-separated words) hold documents both sides must reproduce. A document is a function of
(task, target length, seed, depth, chains) and of the token counter that measures its length.
Everything here is ASCII.

SPECIFICATION

Random numbers: splitmix64 exactly as tools/toy_tasks.py (state = seed XOR salt(task), next(),
below(n) = next() % n). salt(task) = FNV-1a 64 of the task's name (offset 0xCBF29CE484222325,
prime 0x100000001B3, over the name's bytes). pick(list) = list[below(len(list))].
Draws used below:
  number  = str(1000000 + below(9000000))                     (7 digits)
  uuid    = hi = next(), lo = next(); hi = (hi & ~0xF000) | 0x4000; lo = (lo & (2^62 - 1)) | 2^63;
            the 32 lowercase hex digits of hi then lo, cut 8-4-4-4-12 with "-"   (a version-4 UUID)
  word key = pick(ADJECTIVES) + "-" + pick(NOUNS)               (RULER's adjective-noun keys)
  variable = five letters, each "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[below(26)]
  "distinct" draws repeat the draw until the result differs from the ones it must differ from.
  shuffle(list) = for i from len - 1 down to 1: j = below(i + 1), swap list[i], list[j].

Haystack and insertion. A task builds U haystack units (strings) and a list of needles, each with a
position p in 0..U. The context is every unit and needle joined by the task's separator, needle(s)
at position p placed before unit p (after the last unit for p = U); needles at the same position keep
their list order. The document is preamble + context + "\n"; the instruction the model answers is
question + answer_prefix; gold holds the strings the answer must contain.

Depth. A depth d in [0, 1] is first made an integer ppm = floor(d * 1000000 + 0.5) (IEEE double
arithmetic, the same in both languages); the asked needle goes to position floor(U * ppm / 1000000).
Without a depth the asked needle goes to one of RULER's 40 depths: j = below(40) (drawn by every niah
task, used only by those with a depth), percent = floor((200 j + 39) / 78) (= round(100 j / 39), numpy's
linspace(0, 100, 40) rounded), position floor(U * percent / 100). Tasks with a depth: niah_single_1/2/3
and niah_multikey_1/2/3 (one needle is asked). The other tasks place everything by the seed.

Haystacks:
  noise  (RULER "repeat"): U copies of NOISE, separator "\n".
  filler (replaces RULER's Paul Graham essays, which cannot be shipped): U sentences of FILLER_TEMPLATES,
         separator " ". A sentence: t = below(8), then template t with each slot drawn left to right:
         {A} pick(ADJECTIVES), {N} pick(NOUNS), {V} pick(VERBS), {P} pick(PREPOSITIONS),
         {D} pick(ADVERBS) and {D+} the same capitalised (first letter upper case).
  needle (RULER "needle"): U distractor needles, separator "\n": for each, a key (a word key or a uuid
         as the task's keys, distinct from every real needle's key) then a value (a number or a uuid).

niah tasks (RULER's niah.py; K keys, V values per key, Q keys asked):
  task              haystack  keys   values   K V Q
  niah_single_1     noise     words  numbers  1 1 1
  niah_single_2     filler    words  numbers  1 1 1
  niah_single_3     filler    words  uuids    1 1 1
  niah_multikey_1   filler    words  numbers  4 1 1
  niah_multikey_2   needle    words  numbers  1 1 1
  niah_multikey_3   needle    uuids  uuids    1 1 1
  niah_multivalue   filler    words  numbers  1 4 1
  niah_multiquery   filler    words  numbers  4 1 4
  Draws in order: 1. for each key i: the key (distinct from the earlier keys), then its V values
  (each distinct from every earlier value); needle i*V + j = "One of the special magic {T}s for {key_i}
  is: {value_ij}." (T = number or uuid). 2. q = below(K); the asked keys are [q] (Q = 1) or all K in
  order (Q = K). 3. j = below(40) (the seeded depth). 4. each needle in order: the asked one (Q * V = 1)
  at the depth, every other at below(U + 1). 5. the haystack's units.
  With Q * V = 1 (singular): preamble "A special magic {T} is hidden within the following text. Make
  sure to memorize it. I will quiz you about the {T} afterwards.\n", question "What is the special magic
  {T} for {query} mentioned in the provided text?", answer prefix " The special magic {T} for {query}
  mentioned in the provided text is". Otherwise: "Some special magic {T}s are hidden within ...
  about the {T}s afterwards.\n", "What are all the special magic {T}s for {query} mentioned in the
  provided text?", " The special magic {T}s for {query} mentioned in the provided text are".
  query = the asked keys; several are written "a, b, c, and d". gold = the asked keys' values.
vt (variable tracking; C chains, default 1 as RULER, of H = 4 hops): noise haystack.
  Draws: C * (H + 1) distinct variables (chain-major); C distinct values str(10000 + below(90000));
  then per chain H + 1 positions below(U + 1), sorted ascending and given to the chain's statements
  in order: "VAR {X0} = {value}." then "VAR {Xh} = VAR {Xh-1}." for h = 1..H. Needles in chain-major
  order. Preamble "Memorize and track the chain(s) of variable assignment hidden in the following
  text.\n\n", question "Question: Find all variables that are assigned the value {value} in the text
  above.", answer prefix " Answer: According to the chain(s) of variable assignment in the text above,
  {H+1} variables are assigned the value {value}, they are:". gold = chain 0's variables (chain 0's
  value asked).
cwe (common words): U = the number of distinct words (at least 11); with a target length below 4096
  the 10 common words appear 6 times and the others once, else 30 and 3 times (RULER's rule).
  Draws: the words: the first min(U, |COMMON_POOL|) by a partial Fisher-Yates over a copy of
  COMMON_POOL (for i in 0..: j = i + below(|pool| - i), swap, take pool[i]); any further ones are
  made-up words of three syllables (consonant pick("bdfgklmnprstvz") then vowel pick("aeiou"), three
  times), distinct from every word so far. The list = the first 10 words repeated 6 (30) times as
  whole lists (w1..w10, w1..w10, ...), then the rest repeated 1 (3) times likewise; shuffle(list).
  Context = "1. w 2. w ..." (" ".join of f"{i+1}. {w}"), one unit per distinct word; preamble
  "Below is a numbered list of words. In these words, some appear more often than others. Memorize the
  ones that appear most often.\n", question "Question: What are the 10 most common words in the above
  list?", answer prefix " Answer: The top 10 words that appear most often in the list are:",
  gold = the 10 common words.
fwe (frequent words, Zipf alpha = 2): V = max(4, length // 50) ranks (RULER: max_seq_length // 50).
  Draws: V - 1 distinct coded words of six letters pick("abcdefghijklmnopqrstuvwxyz"), for ranks
  2..V; rank 1 is "..." (RULER's noise word). Rank k appears c_k = floor(U * 6079271 / (10^7 * k^2))
  times (6079271 / 10^7 = 6 / pi^2 = 1 / zeta(2) to 7 digits, in integers); the list = rank 1's copies,
  then rank 2's, ...; shuffle(list); context = " ".join(list). An error unless c_4 >= 1 and
  (V = 4 or c_4 > c_5). Preamble "Read the following coded text and track the frequency of each coded
  word. Find the three most frequently appeared coded words. ", question "Question: Do not provide
  any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in
  the above coded text?", answer prefix " Answer: According to the coded text above, the three most
  frequently appeared words are:", gold = ranks 2, 3 and 4.

Length. A document has `length` tokens when counter(document) <= length with the largest haystack the
search finds: U0 = the task's smallest U (cwe 11, fwe 100, the others 1); an error when counter(doc(U0))
> length. Then lo = U0, step = U0, hi = lo + step; while counter(doc(hi)) <= length: lo = hi,
step *= 2, hi = lo + step (an error past 4 * length + 1024 units); then while hi - lo > 1:
mid = (lo + hi) // 2, lo = mid if counter(doc(mid)) <= length else hi = mid. The document is doc(lo).
Each doc(U) is generated afresh from the seed (the draws before the haystack do not depend on U, so
the keys, values and question of a seed are the same at every length and depth).
The counter of the vectors is `word_count` (whitespace-separated words); pith-evict-bench counts the
model's tokens (the special prefix such as BOS included).

Scoring (RULER's eval/synthetic/constants.py, after its postprocess: ASCII control characters
become "\n", then leading and trailing whitespace is stripped): string_match_all = the fraction of
gold strings found in the answer (case-insensitive substrings), string_match_part = 1 if any is
found. RULER scores niah, vt, cwe and fwe with string_match_all (the mean over the documents, x 100).

Deviations from RULER: the filler grammar instead of the essays; vt writes its statements as lines
ending in "." ("VAR X = 12345."), not inside the noise text without a period; no few-shot example
(RULER puts one before vt and cwe prompts); RULER's typo "assgined" is corrected and its answer
prefix's trailing space dropped; cwe's words come from COMMON_POOL then made-up words (RULER's word
list is the wonderwords package's); the needles keep their drawing order (RULER shuffles them with a
fixed seed before placing them at random).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MASK64 = (1 << 64) - 1

TASKS = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
         "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe")

ADJECTIVES = """amber ancient autumn bitter bold brave breezy bright brisk broad calm candid cheerful chilly clever
cloudy coastal crimson crisp curious dapper daring distant dusty eager early elegant emerald faint fancy fierce floral
fluffy fragile frosty gentle giant gilded glossy golden grand hasty hidden hollow humble icy idle jolly keen lively
lofty loyal lucky lunar mellow merry misty modest narrow nimble noble olive orange pale patient placid plain polite
proud purple quiet rapid rare rosy royal rustic sandy scarlet secret serene shiny silent silver simple sleepy slender
smooth snowy solar sparkling steady stormy sturdy sunny swift tender tidy velvet vivid wandering""".split()
NOUNS = """anchor apple arrow badger banner barrel basket beacon blossom boulder bridge bucket butterfly cabin camera
candle canyon castle cedar chapel cherry circle citadel clock comet compass cottage crystal dolphin dragon falcon
feather ferry fiddle forest fountain garden glacier goblet harbor harvest helmet island jacket journal kettle kingdom
ladder lantern lemon library lighthouse lizard magnet maple meadow mirror monkey mountain nugget oasis orchard otter
oyster paddle palace parrot pebble pencil pepper piano pillow planet pocket pony puzzle quarry rabbit raven ribbon
river rocket saddle sailor scarf shadow shell signal spider squirrel statue teapot temple thunder tiger tower trumpet
tulip tunnel turtle valley violin wagon walrus whistle window wizard zebra""".split()
VERBS = """admired avoided borrowed built carried chased cleaned covered crossed described discovered dropped followed
found guarded helped hid imagined joined kept lifted measured mended noticed opened painted passed planted pulled
pushed reached remembered repaired sold showed studied touched visited washed watched""".split()
PREPOSITIONS = "near under behind beside across through around beyond above inside".split()
ADVERBS = "later meanwhile afterwards eventually suddenly quietly slowly often rarely yesterday today soon".split()
COMMON_POOL = ADJECTIVES + NOUNS + VERBS
FILLER_TEMPLATES = [
    "The {A} {N} {V} the {N}.",
    "{D+}, the {N} {V} the {A} {N} {P} the {N}.",
    "Every {N} that {V} the {N} was {A}.",
    "Nobody knew why the {N} {V} the {A} {N}.",
    "In the {A} {N}, one {N} {V} {P} the {N}.",
    "The {N} was {A}, and the {N} was {A}.",
    "They {V} the {N} {P} the {A} {N} {D}.",
    "Our {N} {V} every {A} {N}.",
]
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "One of the special magic {t}s for {key} is: {value}."
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# niah configurations: haystack, key type, value type, K, V, Q.
NIAH = {
    "niah_single_1": ("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("filler", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("filler", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("filler", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("filler", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("filler", "words", "numbers", 4, 1, 4),
}
VT_HOPS = 4
# RULER's tokens_to_generate per task: the answer budget pith-evict-bench uses by default.
ANSWER_TOKENS = {**{t: 128 for t in NIAH}, "vt": 30, "cwe": 120, "fwe": 50}


def has_depth(task: str) -> bool:
    return task in NIAH and NIAH[task][4] * NIAH[task][5] == 1


def salt(task: str) -> int:
    h = 0xCBF29CE484222325
    for byte in task.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    return h


def word_count(text: str) -> int:
    """The vectors' token counter: whitespace-separated words."""
    return len(text.split())


class SplitMix64:
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

    def pick(self, items):
        return items[self.below(len(items))]

    def number(self) -> str:
        return str(1000000 + self.below(9000000))

    def uuid(self) -> str:
        hi, lo = self.next(), self.next()
        hi = (hi & ~0xF000 & MASK64) | 0x4000
        lo = (lo & ((1 << 62) - 1)) | (1 << 63)
        h = f"{hi:016x}{lo:016x}"
        return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def word_key(self) -> str:
        adjective = self.pick(ADJECTIVES)
        return adjective + "-" + self.pick(NOUNS)

    def draw(self, kind: str) -> str:
        return {"words": self.word_key, "numbers": self.number, "uuids": self.uuid}[kind]()

    def distinct(self, make: Callable[[], str], taken) -> str:
        while True:
            value = make()
            if value not in taken:
                return value

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


@dataclass
class Document:
    task: str
    length: int                 # the target length (counter units)
    seed: int
    depth: float | None         # the asked needle's depth (ppm / 10^6), None for tasks without one
    tokens: int = 0             # counter(document)
    haystack: int = 0           # U
    document: str = ""
    question: str = ""
    answer_prefix: str = ""
    gold: list[str] = field(default_factory=list)
    gold_offsets: list[int] = field(default_factory=list)  # where each needle holding gold starts

    @property
    def instruction(self) -> str:
        return self.question + self.answer_prefix


def assemble(units: list[str], needles: list[tuple[int, str, bool]], separator: str) -> tuple[str, list[int]]:
    """units joined by `separator` with each needle (position, text, holds gold) before unit `position`."""
    order = sorted(range(len(needles)), key=lambda i: (needles[i][0], i))
    pieces: list[tuple[str, bool]] = []
    k = 0
    for p in range(len(units) + 1):
        while k < len(order) and needles[order[k]][0] == p:
            pieces.append((needles[order[k]][1], needles[order[k]][2]))
            k += 1
        if p < len(units):
            pieces.append((units[p], False))
    text, offsets = [], []
    at = 0
    for i, (piece, gold) in enumerate(pieces):
        if i:
            text.append(separator)
            at += len(separator)
        if gold:
            offsets.append(at)
        text.append(piece)
        at += len(piece)
    return "".join(text), offsets


def filler_sentence(rng: SplitMix64) -> str:
    template = FILLER_TEMPLATES[rng.below(len(FILLER_TEMPLATES))]
    out, i = [], 0
    while i < len(template):
        if template[i] == "{":
            end = template.index("}", i)
            slot = template[i + 1:end]
            if slot == "A":
                out.append(rng.pick(ADJECTIVES))
            elif slot == "N":
                out.append(rng.pick(NOUNS))
            elif slot == "V":
                out.append(rng.pick(VERBS))
            elif slot == "P":
                out.append(rng.pick(PREPOSITIONS))
            elif slot == "D":
                out.append(rng.pick(ADVERBS))
            else:  # "D+"
                word = rng.pick(ADVERBS)
                out.append(word[0].upper() + word[1:])
            i = end + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def depth_ppm(depth: float) -> int:
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} is outside 0..1")
    return math.floor(depth * 1000000 + 0.5)


def niah(task: str, units: int, seed: int, depth: float | None) -> Document:
    haystack, key_type, value_type, K, V, Q = NIAH[task]
    rng = SplitMix64(seed ^ salt(task))
    keys, values, needles_text = [], [], []
    for _ in range(K):
        keys.append(rng.distinct(lambda: rng.draw(key_type), keys))
        for _ in range(V):
            values.append(rng.distinct(lambda: rng.draw(value_type), values))
    t = "number" if value_type == "numbers" else "uuid"
    for i in range(K):
        for j in range(V):
            needles_text.append(NEEDLE.format(t=t, key=keys[i], value=values[i * V + j]))
    q = rng.below(K)
    asked = [q] if Q == 1 else list(range(K))
    j = rng.below(40)
    single = Q * V == 1
    ppm = depth_ppm(depth) if depth is not None else (200 * j + 39) // 78 * 10000
    needles = []
    for n, text in enumerate(needles_text):
        holds_gold = n // V in asked
        if single and holds_gold:
            needles.append((units * ppm // 1000000, text, True))
        else:
            needles.append((rng.below(units + 1), text, holds_gold))
    if haystack == "noise":
        unit_list, separator = [NOISE] * units, "\n"
    elif haystack == "filler":
        unit_list, separator = [filler_sentence(rng) for _ in range(units)], " "
    else:
        unit_list, separator = [], "\n"
        for _ in range(units):
            key = rng.distinct(lambda: rng.draw(key_type), keys)
            unit_list.append(NEEDLE.format(t=t, key=key, value=rng.draw(value_type)))
    context, offsets = assemble(unit_list, needles, separator)
    queried = [keys[i] for i in asked]
    query = ", ".join(queried[:-1]) + ", and " + queried[-1] if len(queried) > 1 else queried[0]
    if single:
        preamble = (f"A special magic {t} is hidden within the following text. Make sure to memorize it. "
                    f"I will quiz you about the {t} afterwards.\n")
        question = f"What is the special magic {t} for {query} mentioned in the provided text?"
        prefix = f" The special magic {t} for {query} mentioned in the provided text is"
    else:
        preamble = (f"Some special magic {t}s are hidden within the following text. Make sure to memorize it. "
                    f"I will quiz you about the {t}s afterwards.\n")
        question = f"What are all the special magic {t}s for {query} mentioned in the provided text?"
        prefix = f" The special magic {t}s for {query} mentioned in the provided text are"
    gold = [values[i * V + v] for i in asked for v in range(V)]
    return Document(task, 0, seed, ppm / 1000000 if single else None, 0, units, preamble + context + "\n", question,
                    prefix, gold, [len(preamble) + o for o in offsets])


def vt(units: int, seed: int, chains: int) -> Document:
    rng = SplitMix64(seed ^ salt("vt"))
    variables: list[str] = []
    for _ in range(chains * (VT_HOPS + 1)):
        variables.append(rng.distinct(lambda: "".join(UPPER[rng.below(26)] for _ in range(5)), variables))
    chain_values: list[str] = []
    for _ in range(chains):
        chain_values.append(rng.distinct(lambda: str(10000 + rng.below(90000)), chain_values))
    needles = []
    for c in range(chains):
        names = variables[c * (VT_HOPS + 1):(c + 1) * (VT_HOPS + 1)]
        positions = sorted(rng.below(units + 1) for _ in range(VT_HOPS + 1))
        statements = [f"VAR {names[0]} = {chain_values[c]}."] + \
                     [f"VAR {names[h]} = VAR {names[h - 1]}." for h in range(1, VT_HOPS + 1)]
        needles += [(p, s, c == 0) for p, s in zip(positions, statements)]
    context, offsets = assemble([NOISE] * units, needles, "\n")
    preamble = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
    value = chain_values[0]
    return Document("vt", 0, seed, None, 0, units, preamble + context + "\n",
                    f"Question: Find all variables that are assigned the value {value} in the text above.",
                    f" Answer: According to the chain(s) of variable assignment in the text above, {VT_HOPS + 1} "
                    f"variables are assigned the value {value}, they are:",
                    variables[:VT_HOPS + 1], [len(preamble) + o for o in offsets])


def cwe(units: int, seed: int, length: int) -> Document:
    rng = SplitMix64(seed ^ salt("cwe"))
    common_times, other_times = (6, 1) if length < 4096 else (30, 3)
    pool = list(COMMON_POOL)
    words: list[str] = []
    for i in range(min(units, len(pool))):
        j = i + rng.below(len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
        words.append(pool[i])
    taken = set(COMMON_POOL)
    while len(words) < units:
        made = rng.distinct(lambda: "".join(rng.pick(CONSONANTS) + rng.pick(VOWELS) for _ in range(3)), taken)
        taken.add(made)
        words.append(made)
    listed = words[:10] * common_times + words[10:] * other_times
    rng.shuffle(listed)
    context = " ".join(f"{i + 1}. {w}" for i, w in enumerate(listed))
    preamble = ("Below is a numbered list of words. In these words, some appear more often than others. "
                "Memorize the ones that appear most often.\n")
    return Document("cwe", 0, seed, None, 0, units, preamble + context + "\n",
                    "Question: What are the 10 most common words in the above list?",
                    " Answer: The top 10 words that appear most often in the list are:", words[:10], [])


def fwe(units: int, seed: int, length: int) -> Document:
    rng = SplitMix64(seed ^ salt("fwe"))
    ranks = max(4, length // 50)
    vocabulary = ["..."]
    taken: set[str] = set(vocabulary)
    for _ in range(ranks - 1):
        word = rng.distinct(lambda: "".join(rng.pick(LETTERS) for _ in range(6)), taken)
        taken.add(word)
        vocabulary.append(word)
    counts = [units * 6079271 // (10**7 * k * k) for k in range(1, ranks + 1)]
    if counts[3] < 1 or (ranks > 4 and counts[3] <= counts[4]):
        raise ValueError(f"fwe: {units} words do not rank the three most frequent words apart")
    listed = [w for w, c in zip(vocabulary, counts) for _ in range(c)]
    rng.shuffle(listed)
    preamble = ("Read the following coded text and track the frequency of each coded word. "
                "Find the three most frequently appeared coded words. ")
    return Document("fwe", 0, seed, None, 0, units, preamble + " ".join(listed) + "\n",
                    "Question: Do not provide any explanation. Please ignore the dots '....'. "
                    "What are the three most frequently appeared words in the above coded text?",
                    " Answer: According to the coded text above, the three most frequently appeared words are:",
                    vocabulary[1:4], [])


def make_document_units(task: str, units: int, seed: int, length: int, depth: float | None = None,
                        chains: int = 1) -> Document:
    """The document with a haystack of `units` units (no search; `length` matters to cwe and fwe)."""
    if task in NIAH:
        d = niah(task, units, seed, depth if has_depth(task) else None)
    elif task == "vt":
        d = vt(units, seed, chains)
    elif task == "cwe":
        d = cwe(units, seed, length)
    elif task == "fwe":
        d = fwe(units, seed, length)
    else:
        raise ValueError(f"unknown RULER task {task!r}: one of {', '.join(TASKS)}")
    d.length = length
    return d


def min_units(task: str) -> int:
    return {"cwe": 11, "fwe": 100}.get(task, 1)


def make_document(task: str, length: int, seed: int, counter: Callable[[str], int] = word_count,
                  depth: float | None = None, chains: int = 1) -> Document:
    """The document of the specification: the largest haystack the search finds within `length`."""
    if task not in TASKS:
        raise ValueError(f"unknown RULER task {task!r}: one of {', '.join(TASKS)}")
    if chains < 1:
        raise ValueError("vt needs at least one chain")
    if depth is not None:
        depth_ppm(depth)

    def count(units: int) -> tuple[int, Document]:
        d = make_document_units(task, units, seed, length, depth, chains)
        d.tokens = counter(d.document)
        return d.tokens, d

    lo = min_units(task)
    tokens, best = count(lo)
    if tokens > length:
        raise ValueError(f"length {length} is too short for {task}: its smallest document has {tokens} tokens")
    step = lo
    hi = lo + step
    while True:
        if hi > 4 * length + 1024:
            raise ValueError(f"{task}: the token count does not grow with the haystack")
        tokens, d = count(hi)
        if tokens > length:
            break
        lo, best = hi, d
        step *= 2
        hi = lo + step
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tokens, d = count(mid)
        if tokens <= length:
            lo, best = mid, d
        else:
            hi = mid
    return best


def postprocess(prediction: str) -> str:
    """RULER's postprocess_pred: ASCII control characters become newlines, then strip."""
    return "".join("\n" if ord(c) < 0x20 else c for c in prediction).strip()


def string_match_all(prediction: str, gold: list[str]) -> float:
    p = postprocess(prediction).lower()
    return sum(1.0 for g in gold if g.lower() in p) / len(gold)


def string_match_part(prediction: str, gold: list[str]) -> float:
    p = postprocess(prediction).lower()
    return max(1.0 if g.lower() in p else 0.0 for g in gold)


# The vectors the C++ test compares with: (task, length in words, seed, depth or None).
VECTOR_CASES = [
    ("niah_single_1", 200, 0, None), ("niah_single_1", 200, 0, 0.0), ("niah_single_1", 200, 0, 0.5),
    ("niah_single_1", 200, 0, 1.0), ("niah_single_1", 1500, 2**63 + 5, 0.35),
    ("niah_single_2", 200, 1, None), ("niah_single_2", 400, 2, 0.25),
    ("niah_single_3", 250, 3, 0.9),
    ("niah_multikey_1", 300, 4, None), ("niah_multikey_1", 300, 5, 0.1),
    ("niah_multikey_2", 250, 6, 0.6), ("niah_multikey_2", 250, 7, None),
    ("niah_multikey_3", 300, 8, 0.75),
    ("niah_multivalue", 300, 9, None), ("niah_multiquery", 300, 10, None), ("niah_multiquery", 500, 11, None),
    ("vt", 200, 12, None), ("vt", 600, 13, None),
    ("cwe", 300, 14, None), ("cwe", 800, 15, None), ("cwe", 5000, 16, None),
    ("fwe", 300, 17, None), ("fwe", 700, 18, None),
]


def vectors() -> dict:
    cases = []
    for task, length, seed, depth in VECTOR_CASES:
        d = make_document(task, length, seed, word_count, depth)
        cases.append({"task": task, "length": length, "seed": str(seed), "depth": depth, "tokens": d.tokens,
                      "haystack": d.haystack, "document": d.document, "question": d.question,
                      "answer_prefix": d.answer_prefix, "gold": d.gold, "gold_offsets": d.gold_offsets,
                      "document_depth": d.depth})
    chained = make_document("vt", 400, 19, word_count, chains=3)
    cases.append({"task": "vt", "length": 400, "seed": "19", "depth": None, "chains": 3, "tokens": chained.tokens,
                  "haystack": chained.haystack, "document": chained.document, "question": chained.question,
                  "answer_prefix": chained.answer_prefix, "gold": chained.gold, "gold_offsets": chained.gold_offsets,
                  "document_depth": None})
    scoring = [
        {"prediction": " 1234567 and 7654321\n", "gold": ["1234567", "7654321"], "all": 1.0, "part": 1.0},
        {"prediction": "The numbers are 1234567.", "gold": ["1234567", "7654321"], "all": 0.5, "part": 1.0},
        {"prediction": "APPLE, Pear\x01", "gold": ["apple", "pear", "plum"], "all": 2 / 3, "part": 1.0},
        {"prediction": "nothing", "gold": ["x1"], "all": 0.0, "part": 0.0},
    ]
    for s in scoring:
        assert abs(string_match_all(s["prediction"], s["gold"]) - s["all"]) < 1e-12
        assert string_match_part(s["prediction"], s["gold"]) == s["part"]
    return {"salts": {t: str(salt(t)) for t in TASKS}, "cases": cases, "scoring": scoring}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=Path,
                        default=Path(__file__).resolve().parent.parent / "tests/data/ruler/documents.json",
                        help="where to write the vectors")
    parser.add_argument("--show", nargs=3, metavar=("TASK", "LENGTH", "SEED"),
                        help="print one document (length in words), its instruction and gold answer")
    parser.add_argument("--depth", type=float, help="with --show: the asked needle's depth (0..1)")
    parser.add_argument("--chains", type=int, default=1, help="with --show: vt's chains (default 1)")
    args = parser.parse_args()
    if args.show:
        d = make_document(args.show[0], int(args.show[1]), int(args.show[2]), depth=args.depth, chains=args.chains)
        print(d.document, end="")
        print("instruction:", d.instruction)
        print("gold:", ", ".join(d.gold))
        print(f"({d.tokens} words, haystack {d.haystack}, depth {d.depth})")
        return
    args.vectors.parent.mkdir(parents=True, exist_ok=True)
    data = vectors()
    lines = ['{"salts": ' + json.dumps(data["salts"]) + ",", ' "scoring": ' + json.dumps(data["scoring"]) + ",",
             ' "cases": [']
    lines += ["  " + json.dumps(c, separators=(",", ":")) + ("," if i + 1 < len(data["cases"]) else "")
              for i, c in enumerate(data["cases"])]
    lines += [" ]", "}"]
    args.vectors.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.vectors} ({len(data['cases'])} documents)")


if __name__ == "__main__":
    main()
