// SPDX-License-Identifier: MIT
// ruler_tasks: RULER's synthetic tasks (niah_*, vt, cwe, fwe; Hsieh et al. 2024) as text generated from
// a seed, and RULER's scoring. tools/ruler_tasks.py is the twin: its docstring is the specification,
// and this header reproduces it character for character (tests/data/ruler/documents.json).
//
// A document is sized in the tokens of a given counter (a model's tokenizer, or ruler_word_count): the
// haystack grows by doubling, then bisection, to the largest size whose document still has at most
// the target length (make_ruler_document). Random numbers are splitmix64 with integer arithmetic
// only (no std:: distributions), so a seed gives the same text on every platform.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/runtime/toy_tasks.hpp"  // splitmix64

namespace pith {

enum class ruler_task {
  niah_single_1,
  niah_single_2,
  niah_single_3,
  niah_multikey_1,
  niah_multikey_2,
  niah_multikey_3,
  niah_multivalue,
  niah_multiquery,
  vt,
  cwe,
  fwe
};

/// Every RULER task, in RULER's order.
inline constexpr std::array<ruler_task, 11> all_ruler_tasks{
    ruler_task::niah_single_1,   ruler_task::niah_single_2,   ruler_task::niah_single_3, ruler_task::niah_multikey_1,
    ruler_task::niah_multikey_2, ruler_task::niah_multikey_3, ruler_task::niah_multivalue, ruler_task::niah_multiquery,
    ruler_task::vt,              ruler_task::cwe,             ruler_task::fwe};

inline const char* ruler_task_name(ruler_task task) noexcept {
  switch (task) {
    case ruler_task::niah_single_1: return "niah_single_1";
    case ruler_task::niah_single_2: return "niah_single_2";
    case ruler_task::niah_single_3: return "niah_single_3";
    case ruler_task::niah_multikey_1: return "niah_multikey_1";
    case ruler_task::niah_multikey_2: return "niah_multikey_2";
    case ruler_task::niah_multikey_3: return "niah_multikey_3";
    case ruler_task::niah_multivalue: return "niah_multivalue";
    case ruler_task::niah_multiquery: return "niah_multiquery";
    case ruler_task::vt: return "vt";
    case ruler_task::cwe: return "cwe";
    case ruler_task::fwe: return "fwe";
  }
  return "?";
}

/// The task called `name`, or nullopt when it is not a RULER task.
inline std::optional<ruler_task> find_ruler_task(std::string_view name) noexcept {
  for (const ruler_task task : all_ruler_tasks)
    if (name == ruler_task_name(task)) return task;
  return std::nullopt;
}

inline ruler_task parse_ruler_task(std::string_view name) {
  if (const auto task = find_ruler_task(name)) return *task;
  std::string names;
  for (const ruler_task task : all_ruler_tasks) names += std::string(names.empty() ? "" : ", ") + ruler_task_name(task);
  PITH_THROW(argument_error, "unknown RULER task '" + std::string(name) + "' (" + names + ")");
}

/// Whether the task places its asked needle at a depth (niah_single_*, niah_multikey_*: one needle asked).
inline bool ruler_task_has_depth(ruler_task task) noexcept {
  switch (task) {
    case ruler_task::niah_single_1:
    case ruler_task::niah_single_2:
    case ruler_task::niah_single_3:
    case ruler_task::niah_multikey_1:
    case ruler_task::niah_multikey_2:
    case ruler_task::niah_multikey_3: return true;
    default: return false;
  }
}

/// RULER's tokens_to_generate: niah 128, vt 30, cwe 120, fwe 50.
inline std::size_t ruler_answer_tokens(ruler_task task) noexcept {
  switch (task) {
    case ruler_task::vt: return 30;
    case ruler_task::cwe: return 120;
    case ruler_task::fwe: return 50;
    default: return 128;
  }
}

/// Counts the tokens of a text (a model's tokenizer, special tokens included, or ruler_word_count).
using ruler_token_counter = std::function<std::size_t(std::string_view)>;

/// The counter of the committed vectors: whitespace-separated words (Python's len(text.split()) on ASCII).
inline std::size_t ruler_word_count(std::string_view text) noexcept {
  std::size_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

struct ruler_options {
  /// The asked needle's depth in 0..1 (tasks with ruler_task_has_depth); nullopt: one of RULER's 40
  /// depths drawn from the seed.
  std::optional<double> depth;
  /// vt: chains of assignments (the first is asked; RULER uses 1) of 4 hops each.
  std::size_t vt_chains = 1;
};

/// One generated document: text in, strings out.
struct ruler_document {
  ruler_task task = ruler_task::niah_single_1;
  std::size_t length = 0;    // the target length, in the counter's tokens
  std::uint64_t seed = 0;
  std::size_t tokens = 0;    // counter(document)
  std::size_t haystack = 0;  // haystack units (noise lines, filler sentences, distractors, distinct words, ...)
  std::optional<double> depth;  // the asked needle's depth (tasks with one)
  std::string document;      // what the model reads (preamble, context, "\n")
  std::string question;
  std::string answer_prefix; // RULER's answer prefix: the model continues it
  std::vector<std::string> gold;
  std::vector<std::size_t> gold_offsets;  // byte offset in `document` of each needle that holds gold

  /// What the model answers: the question followed by the answer prefix.
  std::string instruction() const { return question + answer_prefix; }
};

namespace ruler_detail {

inline constexpr std::array<std::string_view, 100> adjectives{
    "amber",   "ancient", "autumn",   "bitter", "bold",    "brave",     "breezy",  "bright",  "brisk",    "broad",
    "calm",    "candid",  "cheerful", "chilly", "clever",  "cloudy",    "coastal", "crimson", "crisp",    "curious",
    "dapper",  "daring",  "distant",  "dusty",  "eager",   "early",     "elegant", "emerald", "faint",    "fancy",
    "fierce",  "floral",  "fluffy",   "fragile", "frosty", "gentle",    "giant",   "gilded",  "glossy",   "golden",
    "grand",   "hasty",   "hidden",   "hollow", "humble",  "icy",       "idle",    "jolly",   "keen",     "lively",
    "lofty",   "loyal",   "lucky",    "lunar",  "mellow",  "merry",     "misty",   "modest",  "narrow",   "nimble",
    "noble",   "olive",   "orange",   "pale",   "patient", "placid",    "plain",   "polite",  "proud",    "purple",
    "quiet",   "rapid",   "rare",     "rosy",   "royal",   "rustic",    "sandy",   "scarlet", "secret",   "serene",
    "shiny",   "silent",  "silver",   "simple", "sleepy",  "slender",   "smooth",  "snowy",   "solar",    "sparkling",
    "steady",  "stormy",  "sturdy",   "sunny",  "swift",   "tender",    "tidy",    "velvet",  "vivid",    "wandering"};
inline constexpr std::array<std::string_view, 108> nouns{
    "anchor",   "apple",     "arrow",   "badger",  "banner",   "barrel",   "basket",     "beacon",  "blossom",
    "boulder",  "bridge",    "bucket",  "butterfly", "cabin",  "camera",   "candle",     "canyon",  "castle",
    "cedar",    "chapel",    "cherry",  "circle",  "citadel",  "clock",    "comet",      "compass", "cottage",
    "crystal",  "dolphin",   "dragon",  "falcon",  "feather",  "ferry",    "fiddle",     "forest",  "fountain",
    "garden",   "glacier",   "goblet",  "harbor",  "harvest",  "helmet",   "island",     "jacket",  "journal",
    "kettle",   "kingdom",   "ladder",  "lantern", "lemon",    "library",  "lighthouse", "lizard",  "magnet",
    "maple",    "meadow",    "mirror",  "monkey",  "mountain", "nugget",   "oasis",      "orchard", "otter",
    "oyster",   "paddle",    "palace",  "parrot",  "pebble",   "pencil",   "pepper",     "piano",   "pillow",
    "planet",   "pocket",    "pony",    "puzzle",  "quarry",   "rabbit",   "raven",      "ribbon",  "river",
    "rocket",   "saddle",    "sailor",  "scarf",   "shadow",   "shell",    "signal",     "spider",  "squirrel",
    "statue",   "teapot",    "temple",  "thunder", "tiger",    "tower",    "trumpet",    "tulip",   "tunnel",
    "turtle",   "valley",    "violin",  "wagon",   "walrus",   "whistle",  "window",     "wizard",  "zebra"};
inline constexpr std::array<std::string_view, 40> verbs{
    "admired", "avoided",  "borrowed", "built",   "carried", "chased",  "cleaned",  "covered",    "crossed",  "described",
    "discovered", "dropped", "followed", "found", "guarded", "helped",  "hid",      "imagined",   "joined",   "kept",
    "lifted",  "measured", "mended",   "noticed", "opened",  "painted", "passed",   "planted",    "pulled",   "pushed",
    "reached", "remembered", "repaired", "sold",  "showed",  "studied", "touched",  "visited",    "washed",   "watched"};
inline constexpr std::array<std::string_view, 10> prepositions{"near",   "under",  "behind", "beside", "across",
                                                               "through", "around", "beyond", "above",  "inside"};
inline constexpr std::array<std::string_view, 12> adverbs{"later",   "meanwhile", "afterwards", "eventually",
                                                          "suddenly", "quietly",  "slowly",     "often",
                                                          "rarely",  "yesterday", "today",      "soon"};
inline constexpr std::array<std::string_view, 8> filler_templates{
    "The {A} {N} {V} the {N}.",
    "{D+}, the {N} {V} the {A} {N} {P} the {N}.",
    "Every {N} that {V} the {N} was {A}.",
    "Nobody knew why the {N} {V} the {A} {N}.",
    "In the {A} {N}, one {N} {V} {P} the {N}.",
    "The {N} was {A}, and the {N} was {A}.",
    "They {V} the {N} {P} the {A} {N} {D}.",
    "Our {N} {V} every {A} {N}.",
};
inline constexpr std::string_view noise_text = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
inline constexpr std::string_view consonants = "bdfgklmnprstvz";
inline constexpr std::string_view vowels = "aeiou";
inline constexpr std::string_view letters = "abcdefghijklmnopqrstuvwxyz";
inline constexpr std::string_view upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
inline constexpr std::size_t vt_hops = 4;

enum class haystack_kind { noise, filler, needle };
enum class draw_kind { words, numbers, uuids };

struct niah_config {
  haystack_kind haystack;
  draw_kind keys, values;
  std::size_t k, v, q;
};

inline niah_config niah_of(ruler_task task) {
  constexpr auto noisy = haystack_kind::noise, filler = haystack_kind::filler, needles = haystack_kind::needle;
  switch (task) {
    case ruler_task::niah_single_1: return {noisy, draw_kind::words, draw_kind::numbers, 1, 1, 1};
    case ruler_task::niah_single_2: return {filler, draw_kind::words, draw_kind::numbers, 1, 1, 1};
    case ruler_task::niah_single_3: return {filler, draw_kind::words, draw_kind::uuids, 1, 1, 1};
    case ruler_task::niah_multikey_1: return {filler, draw_kind::words, draw_kind::numbers, 4, 1, 1};
    case ruler_task::niah_multikey_2: return {needles, draw_kind::words, draw_kind::numbers, 1, 1, 1};
    case ruler_task::niah_multikey_3: return {needles, draw_kind::uuids, draw_kind::uuids, 1, 1, 1};
    case ruler_task::niah_multivalue: return {filler, draw_kind::words, draw_kind::numbers, 1, 4, 1};
    case ruler_task::niah_multiquery: return {filler, draw_kind::words, draw_kind::numbers, 4, 1, 4};
    default: PITH_THROW(argument_error, std::string("ruler: ") + ruler_task_name(task) + " is not a niah task");
  }
}

/// FNV-1a 64 of the task's name: the seed's salt.
inline std::uint64_t salt(ruler_task task) noexcept {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : std::string_view(ruler_task_name(task))) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return h;
}

// The draws of the specification over splitmix64.
class drawer {
 public:
  explicit drawer(std::uint64_t seed) : rng_(seed) {}
  std::uint64_t next() { return rng_.next(); }
  std::uint64_t below(std::uint64_t n) { return rng_.below(n); }
  template <class List>
  std::string_view pick(const List& list) {
    return list[static_cast<std::size_t>(rng_.below(list.size()))];
  }
  char pick_char(std::string_view chars) { return chars[static_cast<std::size_t>(rng_.below(chars.size()))]; }

  std::string number() { return std::to_string(1000000 + rng_.below(9000000)); }
  std::string uuid() {
    std::uint64_t hi = rng_.next(), lo = rng_.next();
    hi = (hi & ~std::uint64_t{0xF000}) | 0x4000;
    lo = (lo & ((std::uint64_t{1} << 62) - 1)) | (std::uint64_t{1} << 63);
    static constexpr char hex[] = "0123456789abcdef";
    std::string digits;
    for (int shift = 60; shift >= 0; shift -= 4) digits += hex[(hi >> shift) & 15];
    for (int shift = 60; shift >= 0; shift -= 4) digits += hex[(lo >> shift) & 15];
    return digits.substr(0, 8) + "-" + digits.substr(8, 4) + "-" + digits.substr(12, 4) + "-" + digits.substr(16, 4) +
           "-" + digits.substr(20, 12);
  }
  std::string word_key() {
    std::string key(pick(adjectives));
    key += '-';
    key += pick(nouns);
    return key;
  }
  std::string draw(draw_kind kind) {
    switch (kind) {
      case draw_kind::words: return word_key();
      case draw_kind::numbers: return number();
      case draw_kind::uuids: return uuid();
    }
    return {};
  }
  /// make() repeated until its result is not in `taken` (a vector or a set).
  template <class Make, class Taken>
  std::string distinct(Make&& make, const Taken& taken) {
    for (;;) {
      std::string value = make();
      if (std::find(taken.begin(), taken.end(), value) == taken.end()) return value;
    }
  }
  template <class Make>
  std::string distinct_in_set(Make&& make, const std::unordered_set<std::string>& taken) {
    for (;;) {
      std::string value = make();
      if (!taken.contains(value)) return value;
    }
  }
  template <class T>
  void shuffle(std::vector<T>& items) {
    for (std::size_t i = items.size(); i-- > 1;) std::swap(items[i], items[static_cast<std::size_t>(rng_.below(i + 1))]);
  }

 private:
  splitmix64 rng_;
};

struct needle {
  std::size_t position;
  std::string text;
  bool gold;
};

// The units joined by `separator`, each needle before unit `position` (stable by list order);
// the offsets (from the context's start) of the needles that hold gold go to `offsets`.
inline std::string assemble(const std::vector<std::string>& units, const std::vector<needle>& needles,
                            std::string_view separator, std::vector<std::size_t>& offsets) {
  std::vector<std::size_t> order(needles.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return needles[a].position < needles[b].position; });
  std::string text;
  bool first = true;
  const auto add = [&](std::string_view piece, bool gold) {
    if (!first) text += separator;
    first = false;
    if (gold) offsets.push_back(text.size());
    text += piece;
  };
  std::size_t k = 0;
  for (std::size_t p = 0; p <= units.size(); ++p) {
    while (k < order.size() && needles[order[k]].position == p) {
      add(needles[order[k]].text, needles[order[k]].gold);
      ++k;
    }
    if (p < units.size()) add(units[p], false);
  }
  return text;
}

inline std::string filler_sentence(drawer& rng) {
  const std::string_view tmpl = filler_templates[static_cast<std::size_t>(rng.below(filler_templates.size()))];
  std::string out;
  for (std::size_t i = 0; i < tmpl.size();) {
    if (tmpl[i] != '{') {
      out += tmpl[i++];
      continue;
    }
    const std::size_t end = tmpl.find('}', i);
    const std::string_view slot = tmpl.substr(i + 1, end - i - 1);
    if (slot == "A") out += rng.pick(adjectives);
    else if (slot == "N") out += rng.pick(nouns);
    else if (slot == "V") out += rng.pick(verbs);
    else if (slot == "P") out += rng.pick(prepositions);
    else if (slot == "D") out += rng.pick(adverbs);
    else {  // "D+": capitalised
      std::string word(rng.pick(adverbs));
      word[0] = static_cast<char>(word[0] - 'a' + 'A');
      out += word;
    }
    i = end + 1;
  }
  return out;
}

inline std::string needle_text(std::string_view type, std::string_view key, std::string_view value) {
  return "One of the special magic " + std::string(type) + "s for " + std::string(key) + " is: " + std::string(value) + ".";
}

inline std::uint64_t depth_ppm(double depth) {
  if (!(depth >= 0.0 && depth <= 1.0))
    PITH_THROW(argument_error, "ruler: depth " + std::to_string(depth) + " is outside 0..1");
  return static_cast<std::uint64_t>(std::floor(depth * 1000000.0 + 0.5));
}

inline void offsets_after(std::size_t preamble, std::vector<std::size_t>& offsets) {
  for (auto& offset : offsets) offset += preamble;
}

inline ruler_document niah(ruler_task task, std::size_t units, std::uint64_t seed, std::optional<double> depth) {
  const niah_config config = niah_of(task);
  drawer rng(seed ^ salt(task));
  std::vector<std::string> keys, values;
  for (std::size_t i = 0; i < config.k; ++i) {
    keys.push_back(rng.distinct([&] { return rng.draw(config.keys); }, keys));
    for (std::size_t j = 0; j < config.v; ++j) values.push_back(rng.distinct([&] { return rng.draw(config.values); }, values));
  }
  const std::string_view type = config.values == draw_kind::numbers ? "number" : "uuid";
  const std::size_t q = static_cast<std::size_t>(rng.below(config.k));
  std::vector<std::size_t> asked;
  if (config.q == 1) asked.push_back(q);
  else
    for (std::size_t i = 0; i < config.k; ++i) asked.push_back(i);
  const std::uint64_t j = rng.below(40);
  const bool single = config.q * config.v == 1;
  const std::uint64_t ppm = depth ? depth_ppm(*depth) : (200 * j + 39) / 78 * 10000;
  std::vector<needle> needles;
  for (std::size_t n = 0; n < config.k * config.v; ++n) {
    const bool gold = std::find(asked.begin(), asked.end(), n / config.v) != asked.end();
    const std::string text = needle_text(type, keys[n / config.v], values[n]);
    if (single && gold) needles.push_back({static_cast<std::size_t>(units * ppm / 1000000), text, true});
    else needles.push_back({static_cast<std::size_t>(rng.below(units + 1)), text, gold});
  }
  std::vector<std::string> unit_list;
  unit_list.reserve(units);
  std::string_view separator = "\n";
  if (config.haystack == haystack_kind::noise) {
    unit_list.assign(units, std::string(noise_text));
  } else if (config.haystack == haystack_kind::filler) {
    separator = " ";
    for (std::size_t u = 0; u < units; ++u) unit_list.push_back(filler_sentence(rng));
  } else {
    for (std::size_t u = 0; u < units; ++u) {
      const std::string key = rng.distinct([&] { return rng.draw(config.keys); }, keys);
      unit_list.push_back(needle_text(type, key, rng.draw(config.values)));
    }
  }
  ruler_document doc;
  doc.task = task;
  doc.seed = seed;
  doc.haystack = units;
  if (single) doc.depth = static_cast<double>(ppm) / 1000000.0;
  const std::string context = assemble(unit_list, needles, separator, doc.gold_offsets);
  std::string query;
  for (std::size_t i = 0; i < asked.size(); ++i) {
    if (i > 0) query += i + 1 == asked.size() ? ", and " : ", ";
    query += keys[asked[i]];
  }
  const std::string t(type);
  std::string preamble;
  if (single) {
    preamble = "A special magic " + t + " is hidden within the following text. Make sure to memorize it. I will quiz you about the " +
               t + " afterwards.\n";
    doc.question = "What is the special magic " + t + " for " + query + " mentioned in the provided text?";
    doc.answer_prefix = " The special magic " + t + " for " + query + " mentioned in the provided text is";
  } else {
    preamble = "Some special magic " + t + "s are hidden within the following text. Make sure to memorize it. I will quiz you about the " +
               t + "s afterwards.\n";
    doc.question = "What are all the special magic " + t + "s for " + query + " mentioned in the provided text?";
    doc.answer_prefix = " The special magic " + t + "s for " + query + " mentioned in the provided text are";
  }
  for (const std::size_t i : asked)
    for (std::size_t v = 0; v < config.v; ++v) doc.gold.push_back(values[i * config.v + v]);
  offsets_after(preamble.size(), doc.gold_offsets);
  doc.document = preamble + context + "\n";
  return doc;
}

inline ruler_document vt(std::size_t units, std::uint64_t seed, std::size_t chains) {
  drawer rng(seed ^ salt(ruler_task::vt));
  std::vector<std::string> variables, chain_values;
  for (std::size_t i = 0; i < chains * (vt_hops + 1); ++i)
    variables.push_back(rng.distinct(
        [&] {
          std::string name;
          for (int c = 0; c < 5; ++c) name += rng.pick_char(upper);
          return name;
        },
        variables));
  for (std::size_t c = 0; c < chains; ++c)
    chain_values.push_back(rng.distinct([&] { return std::to_string(10000 + rng.below(90000)); }, chain_values));
  std::vector<needle> needles;
  for (std::size_t c = 0; c < chains; ++c) {
    const std::string* names = &variables[c * (vt_hops + 1)];
    std::vector<std::size_t> positions;
    for (std::size_t h = 0; h <= vt_hops; ++h) positions.push_back(static_cast<std::size_t>(rng.below(units + 1)));
    std::sort(positions.begin(), positions.end());
    needles.push_back({positions[0], "VAR " + names[0] + " = " + chain_values[c] + ".", c == 0});
    for (std::size_t h = 1; h <= vt_hops; ++h)
      needles.push_back({positions[h], "VAR " + names[h] + " = VAR " + names[h - 1] + ".", c == 0});
  }
  ruler_document doc;
  doc.task = ruler_task::vt;
  doc.seed = seed;
  doc.haystack = units;
  const std::string context = assemble(std::vector<std::string>(units, std::string(noise_text)), needles, "\n", doc.gold_offsets);
  const std::string preamble = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n";
  offsets_after(preamble.size(), doc.gold_offsets);
  doc.document = preamble + context + "\n";
  const std::string& value = chain_values[0];
  doc.question = "Question: Find all variables that are assigned the value " + value + " in the text above.";
  doc.answer_prefix = " Answer: According to the chain(s) of variable assignment in the text above, " +
                      std::to_string(vt_hops + 1) + " variables are assigned the value " + value + ", they are:";
  doc.gold.assign(variables.begin(), variables.begin() + static_cast<std::ptrdiff_t>(vt_hops + 1));
  return doc;
}

inline std::vector<std::string_view> common_pool() {
  std::vector<std::string_view> pool(adjectives.begin(), adjectives.end());
  pool.insert(pool.end(), nouns.begin(), nouns.end());
  pool.insert(pool.end(), verbs.begin(), verbs.end());
  return pool;
}

inline ruler_document cwe(std::size_t units, std::uint64_t seed, std::size_t length) {
  drawer rng(seed ^ salt(ruler_task::cwe));
  const std::size_t common_times = length < 4096 ? 6 : 30, other_times = length < 4096 ? 1 : 3;
  std::vector<std::string_view> pool = common_pool();
  std::vector<std::string> words;
  words.reserve(units);
  for (std::size_t i = 0; i < std::min(units, pool.size()); ++i) {
    std::swap(pool[i], pool[i + static_cast<std::size_t>(rng.below(pool.size() - i))]);
    words.emplace_back(pool[i]);
  }
  std::unordered_set<std::string> taken;
  for (const std::string_view word : pool) taken.emplace(word);
  while (words.size() < units) {
    std::string made = rng.distinct_in_set(
        [&] {
          std::string word;
          for (int s = 0; s < 3; ++s) {
            word += rng.pick_char(consonants);
            word += rng.pick_char(vowels);
          }
          return word;
        },
        taken);
    taken.insert(made);
    words.push_back(std::move(made));
  }
  std::vector<std::uint32_t> listed;  // indices into words
  listed.reserve(10 * common_times + (units - 10) * other_times);
  for (std::size_t r = 0; r < common_times; ++r)
    for (std::uint32_t w = 0; w < 10; ++w) listed.push_back(w);
  for (std::size_t r = 0; r < other_times; ++r)
    for (std::size_t w = 10; w < units; ++w) listed.push_back(static_cast<std::uint32_t>(w));
  rng.shuffle(listed);
  ruler_document doc;
  doc.task = ruler_task::cwe;
  doc.seed = seed;
  doc.haystack = units;
  doc.document =
      "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that "
      "appear most often.\n";
  for (std::size_t i = 0; i < listed.size(); ++i) {
    if (i > 0) doc.document += ' ';
    doc.document += std::to_string(i + 1);
    doc.document += ". ";
    doc.document += words[listed[i]];
  }
  doc.document += '\n';
  doc.question = "Question: What are the 10 most common words in the above list?";
  doc.answer_prefix = " Answer: The top 10 words that appear most often in the list are:";
  doc.gold.assign(words.begin(), words.begin() + 10);
  return doc;
}

inline ruler_document fwe(std::size_t units, std::uint64_t seed, std::size_t length) {
  drawer rng(seed ^ salt(ruler_task::fwe));
  const std::size_t ranks = std::max<std::size_t>(4, length / 50);
  std::vector<std::string> vocabulary{"..."};
  std::unordered_set<std::string> taken{"..."};
  for (std::size_t r = 1; r < ranks; ++r) {
    std::string word = rng.distinct_in_set(
        [&] {
          std::string w;
          for (int c = 0; c < 6; ++c) w += rng.pick_char(letters);
          return w;
        },
        taken);
    taken.insert(word);
    vocabulary.push_back(std::move(word));
  }
  std::vector<std::uint64_t> counts;
  for (std::uint64_t k = 1; k <= ranks; ++k) counts.push_back(static_cast<std::uint64_t>(units) * 6079271 / (10000000 * k * k));
  if (counts[3] < 1 || (ranks > 4 && counts[3] <= counts[4]))
    PITH_THROW(argument_error, "ruler fwe: " + std::to_string(units) + " words do not rank the three most frequent words apart");
  std::vector<std::uint32_t> listed;
  for (std::size_t r = 0; r < ranks; ++r)
    for (std::uint64_t c = 0; c < counts[r]; ++c) listed.push_back(static_cast<std::uint32_t>(r));
  rng.shuffle(listed);
  ruler_document doc;
  doc.task = ruler_task::fwe;
  doc.seed = seed;
  doc.haystack = units;
  doc.document = "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
                 "appeared coded words. ";
  for (std::size_t i = 0; i < listed.size(); ++i) {
    if (i > 0) doc.document += ' ';
    doc.document += vocabulary[listed[i]];
  }
  doc.document += '\n';
  doc.question = "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
                 "frequently appeared words in the above coded text?";
  doc.answer_prefix = " Answer: According to the coded text above, the three most frequently appeared words are:";
  doc.gold.assign(vocabulary.begin() + 1, vocabulary.begin() + 4);
  return doc;
}

}  // namespace ruler_detail

/// The smallest haystack of a task (cwe: 11 distinct words; fwe: 100 words before the Zipf counts;
/// the others: one unit).
inline std::size_t ruler_min_haystack(ruler_task task) noexcept {
  return task == ruler_task::cwe ? 11 : task == ruler_task::fwe ? 100 : 1;
}

/// The document of `task` with a haystack of `units` units, no search (`length` is the target
/// length, which cwe's frequencies and fwe's vocabulary depend on). tokens stays 0.
inline ruler_document make_ruler_document_units(ruler_task task, std::size_t units, std::uint64_t seed, std::size_t length,
                                                const ruler_options& options = {}) {
  if (options.vt_chains < 1 || options.vt_chains > 1000)
    PITH_THROW(argument_error, "ruler: vt needs 1..1000 chains, not " + std::to_string(options.vt_chains));
  if (options.depth) ruler_detail::depth_ppm(*options.depth);
  if (units < ruler_min_haystack(task))
    PITH_THROW(argument_error, std::string("ruler: ") + ruler_task_name(task) + " needs a haystack of at least " +
                                   std::to_string(ruler_min_haystack(task)) + " units");
  ruler_document doc;
  switch (task) {
    case ruler_task::vt: doc = ruler_detail::vt(units, seed, options.vt_chains); break;
    case ruler_task::cwe: doc = ruler_detail::cwe(units, seed, length); break;
    case ruler_task::fwe: doc = ruler_detail::fwe(units, seed, length); break;
    default: doc = ruler_detail::niah(task, units, seed, ruler_task_has_depth(task) ? options.depth : std::nullopt);
  }
  doc.length = length;
  return doc;
}

/// The document of `task` for `seed` with at most `length` tokens of `count`: the largest haystack
/// the specification's search finds (doubling from the smallest, then bisection; tools/ruler_tasks.py).
/// argument_error when even the smallest document is longer than `length`.
inline ruler_document make_ruler_document(ruler_task task, std::size_t length, std::uint64_t seed,
                                          const ruler_token_counter& count, const ruler_options& options = {}) {
  if (!count) PITH_THROW(argument_error, "make_ruler_document: no token counter");
  const auto measured = [&](std::size_t units) {
    ruler_document doc = make_ruler_document_units(task, units, seed, length, options);
    doc.tokens = count(doc.document);
    return doc;
  };
  std::size_t lo = ruler_min_haystack(task);
  ruler_document best = measured(lo);
  if (best.tokens > length)
    PITH_THROW(argument_error, "make_ruler_document: length " + std::to_string(length) + " is too short for " +
                                   ruler_task_name(task) + ": its smallest document has " + std::to_string(best.tokens) +
                                   " tokens");
  std::size_t step = lo, hi = lo + step;
  const std::size_t limit = 4 * length + 1024;
  for (;;) {
    if (hi > limit)
      PITH_THROW(argument_error, std::string("make_ruler_document: ") + ruler_task_name(task) +
                                     ": the token count does not grow with the haystack");
    ruler_document doc = measured(hi);
    if (doc.tokens > length) break;
    lo = hi;
    best = std::move(doc);
    step *= 2;
    hi = lo + step;
  }
  while (hi - lo > 1) {
    const std::size_t mid = lo + (hi - lo) / 2;
    ruler_document doc = measured(mid);
    if (doc.tokens <= length) {
      lo = mid;
      best = std::move(doc);
    } else {
      hi = mid;
    }
  }
  return best;
}

/// RULER's postprocess_pred: ASCII control characters become "\n", then surrounding whitespace goes.
inline std::string ruler_postprocess(std::string_view prediction) {
  std::string out(prediction);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = '\n';
  const auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  std::size_t begin = 0, end = out.size();
  while (begin < end && is_space(out[begin])) ++begin;
  while (end > begin && is_space(out[end - 1])) --end;
  return out.substr(begin, end - begin);
}

namespace ruler_detail {
inline std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}
}  // namespace ruler_detail

/// RULER's string_match_all for one answer: the fraction of `gold` found in the postprocessed
/// prediction (case-insensitive substrings; ASCII case folding). RULER's metric for niah, vt, cwe and fwe.
inline double string_match_all(std::string_view prediction, std::span<const std::string> gold) {
  if (gold.empty()) PITH_THROW(argument_error, "string_match_all: no gold strings");
  const std::string p = ruler_detail::lower(ruler_postprocess(prediction));
  std::size_t found = 0;
  for (const auto& g : gold) found += p.find(ruler_detail::lower(g)) != std::string::npos ? 1u : 0u;
  return static_cast<double>(found) / static_cast<double>(gold.size());
}

/// RULER's string_match_part for one answer: 1 when any gold string is found, else 0 (its QA metric).
inline double string_match_part(std::string_view prediction, std::span<const std::string> gold) {
  if (gold.empty()) PITH_THROW(argument_error, "string_match_part: no gold strings");
  const std::string p = ruler_detail::lower(ruler_postprocess(prediction));
  for (const auto& g : gold)
    if (p.find(ruler_detail::lower(g)) != std::string::npos) return 1.0;
  return 0.0;
}

}  // namespace pith
