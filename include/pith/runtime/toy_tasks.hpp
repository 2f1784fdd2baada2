// SPDX-License-Identifier: MIT
// toy_tasks: the synthetic long-document retrieval tasks (passkey, kv, hop) of the toy checkpoints,
// generated from a seed exactly as tools/toy_tasks.py does (its docstring is the specification).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/core/splitmix64.hpp"

namespace pith {

enum class toy_task { passkey, kv, hop };

inline const char* toy_task_name(toy_task task) noexcept {
  switch (task) {
    case toy_task::passkey: return "passkey";
    case toy_task::kv: return "kv";
    case toy_task::hop: return "hop";
  }
  return "?";
}

inline toy_task parse_toy_task(std::string_view name) {
  for (const toy_task task : {toy_task::passkey, toy_task::kv, toy_task::hop})
    if (name == toy_task_name(task)) return task;
  PITH_THROW(argument_error, "unknown toy task '" + std::string(name) + "' (passkey, kv, hop)");
}

/// One generated document: token ids in the toy vocabulary (toy_vocabulary()).
struct toy_document {
  std::vector<std::int32_t> ids;          // BOS + length - 1 words
  std::vector<std::int32_t> instruction;  // the question, no BOS
  std::vector<std::int32_t> answer;       // the expected greedy answer: the digits and "."
  std::vector<std::size_t> fact_offsets;  // index in ids where each fact starts (BOS counted)
};

namespace toy_detail {

// The word lists, in vocabulary order (tools/toy_tasks.py: VOCABULARY).
inline constexpr std::array<std::string_view, 3> specials{"<unk>", "<s>", "</s>"};
inline constexpr std::array<std::string_view, 3> punctuation{".", ",", "?"};
inline constexpr std::array<std::string_view, 10> digits{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
inline constexpr std::array<std::string_view, 13> task_words{"the",      "code", "of",    "is",   "what", "pass", "key",
                                                             "remember", "it",   "keeps", "that", "a",    "and"};
inline constexpr std::array<std::string_view, 32> names{
    "alice", "bob",   "carol", "dave",  "erin",  "frank", "grace",  "heidi", "ivan", "judy",  "karl",
    "liam",  "mona",  "nina",  "oscar", "peggy", "quinn", "rosa",   "sam",   "tara", "uma",   "victor",
    "wendy", "xena",  "yuri",  "zoe",   "adam",  "bella", "chris",  "dora",  "eli",  "fiona"};
inline constexpr std::array<std::string_view, 32> nouns{
    "cat",   "dog",   "bird", "fish", "horse", "river", "tree", "stone", "house",   "garden", "road",
    "field", "forest", "lake", "cloud", "star", "moon",  "sun",  "boat",  "ship",    "train",  "book",
    "letter", "song", "dream", "city", "village", "hill", "bridge", "tower", "lamp", "door"};
inline constexpr std::array<std::string_view, 24> adjectives{
    "red",  "green", "blue", "small", "large", "old",  "young", "quiet", "loud",   "bright", "dark",  "warm",
    "cold", "soft",  "hard", "quick", "slow",  "happy", "sad",  "calm",  "wild",  "gentle", "brave", "tall"};
inline constexpr std::array<std::string_view, 24> verbs{
    "sees",    "finds",   "follows", "likes",  "watches", "carries", "paints", "builds",
    "opens",   "closes",  "crosses", "visits", "reaches", "leaves",  "holds",  "moves",
    "pulls",   "pushes",  "meets",   "guards", "calls",   "helps",   "hides",  "shows"};
inline constexpr std::array<std::string_view, 8> prepositions{"near",   "under",  "over",    "behind",
                                                              "beside", "across", "through", "around"};
inline constexpr std::array<std::string_view, 8> adverbs{"today", "yesterday", "often", "sometimes",
                                                         "slowly", "quickly",  "later", "soon"};

// First id of each list.
inline constexpr std::int32_t punctuation_id = 3, digit_id = 6, task_word_id = 16, name_id = 29, noun_id = 61,
                              adjective_id = 93, verb_id = 117, preposition_id = 141, adverb_id = 149, vocabulary_size = 157;
inline constexpr std::int32_t bos = 1, eos = 2, period = 3, comma = 4, question = 5;
inline constexpr std::int32_t the = 16, code = 17, of = 18, is = 19, what = 20, pass = 21, key = 22, remember = 23, it = 24,
                              keeps = 25, that = 26, a = 27, and_ = 28;

// Template slots: a fixed word (>= 0) or a word class (< 0).
inline constexpr std::int32_t adj = -1, noun = -2, verb = -3, prep = -4, adv = -5, end = -100;
inline constexpr std::array<std::array<std::int32_t, 10>, 5> templates{{
    {the, adj, noun, verb, the, noun, period, end},
    {the, noun, verb, the, adj, noun, prep, the, noun, period},
    {adv, comma, the, noun, verb, prep, the, adj, noun, period},
    {the, noun, and_, the, noun, verb, a, noun, period, end},
    {a, adj, noun, verb, the, adj, noun, period, end},
}};

inline std::int32_t draw(splitmix64& rng, std::int32_t slot) {
  switch (slot) {
    case adj: return adjective_id + static_cast<std::int32_t>(rng.below(adjectives.size()));
    case noun: return noun_id + static_cast<std::int32_t>(rng.below(nouns.size()));
    case verb: return verb_id + static_cast<std::int32_t>(rng.below(verbs.size()));
    case prep: return preposition_id + static_cast<std::int32_t>(rng.below(prepositions.size()));
    case adv: return adverb_id + static_cast<std::int32_t>(rng.below(adverbs.size()));
    default: return slot;
  }
}

// dst += src, element by element (GCC 12's -Warray-bounds misfires on vector::insert of ranges here).
inline void append(std::vector<std::int32_t>& dst, const std::vector<std::int32_t>& src) {
  for (const std::int32_t id : src) dst.push_back(id);
}

inline std::vector<std::int32_t> digit_ids(splitmix64& rng, std::size_t count) {
  std::vector<std::int32_t> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(digit_id + static_cast<std::int32_t>(rng.below(10)));
  return out;
}

inline std::uint64_t salt(toy_task task) noexcept {
  switch (task) {
    case toy_task::passkey: return 0;
    case toy_task::kv: return 0x6B76000000000000ull;
    case toy_task::hop: return 0x686F700000000000ull;
  }
  return 0;
}

}  // namespace toy_detail

inline constexpr std::size_t toy_default_facts = 8;
inline constexpr std::size_t toy_max_facts = 32;

/// The toy vocabulary (157 words; id = index): the "tokens" of every toy model's vocab.json.
inline std::vector<std::string> toy_vocabulary() {
  using namespace toy_detail;
  std::vector<std::string> out;
  const auto add = [&](const auto& list) {
    for (const std::string_view word : list) out.emplace_back(word);
  };
  add(specials), add(punctuation), add(digits), add(task_words), add(names), add(nouns), add(adjectives), add(verbs),
      add(prepositions), add(adverbs);
  return out;
}

/// The document of `task` with `length` tokens (BOS included) for `seed`; `facts` is the kv/hop fact
/// count (1..32, hop 1..31; ignored by passkey). argument_error when the facts do not fit.
inline toy_document make_toy_document(toy_task task, std::size_t length, std::uint64_t seed,
                                      std::size_t facts = toy_default_facts) {
  using namespace toy_detail;
  if (task != toy_task::passkey && (facts < 1 || facts > toy_max_facts - (task == toy_task::hop ? 1 : 0)))
    PITH_THROW(argument_error, "make_toy_document: " + std::to_string(facts) + " facts is outside 1.." +
                                   std::to_string(toy_max_facts - (task == toy_task::hop ? 1 : 0)));
  if (length == 0) PITH_THROW(argument_error, "make_toy_document: length must be at least 1 (BOS)");
  splitmix64 rng(seed ^ salt(task));
  toy_document doc;
  std::vector<std::vector<std::int32_t>> fact_list;
  if (task == toy_task::passkey) {
    const auto secret = digit_ids(rng, 5);
    std::vector<std::int32_t> fact{the, pass, key, is};
    append(fact, secret);
    append(fact, {period, remember, it, period});
    fact_list.push_back(fact);
    doc.instruction = {what, is, the, pass, key, question};
    doc.answer = secret;
    doc.answer.push_back(period);
  } else {
    const std::size_t drawn = facts + (task == toy_task::hop ? 1 : 0);
    std::array<std::int32_t, 32> pool{};
    for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = name_id + static_cast<std::int32_t>(i);
    for (std::size_t i = 0; i < drawn; ++i) std::swap(pool[i], pool[i + rng.below(pool.size() - i)]);
    std::vector<std::vector<std::int32_t>> codes;
    for (std::size_t i = 0; i < facts; ++i) codes.push_back(digit_ids(rng, 4));
    const std::size_t q = rng.below(facts);
    for (std::size_t i = 0; i < facts; ++i) {
      std::vector<std::int32_t> fact{the, code, of, pool[i], is};
      append(fact, codes[i]);
      fact.push_back(period);
      fact_list.push_back(fact);
    }
    if (task == toy_task::kv) {
      doc.instruction = {what, is, the, code, of, pool[q], question};
    } else {
      const std::int32_t link = pool[facts];
      fact_list.push_back({link, keeps, the, code, of, pool[q], period});
      doc.instruction = {what, is, the, code, that, link, keeps, question};
    }
    doc.answer = codes[q];
    doc.answer.push_back(period);
  }
  std::size_t fact_words = 0;
  for (const auto& fact : fact_list) fact_words += fact.size();
  if (fact_words > length - 1)
    PITH_THROW(argument_error, "make_toy_document: length " + std::to_string(length) + " is too short for the " +
                                   toy_task_name(task) + " facts (" + std::to_string(fact_words) + " words + BOS)");
  const std::size_t filler_count = length - 1 - fact_words;
  std::vector<std::uint64_t> offsets;
  for (std::size_t i = 0; i < fact_list.size(); ++i) offsets.push_back(rng.below(filler_count + 1));
  std::sort(offsets.begin(), offsets.end());
  std::vector<std::int32_t> filler;
  filler.reserve(filler_count + 10);
  while (filler.size() < filler_count) {
    const auto& sentence = templates[rng.below(templates.size())];
    for (const std::int32_t slot : sentence) {
      if (slot == end) break;
      filler.push_back(draw(rng, slot));
    }
  }
  filler.resize(filler_count);
  doc.ids.reserve(length);
  doc.ids.push_back(bos);
  std::size_t next_fact = 0;
  for (std::size_t b = 0; b <= filler_count; ++b) {
    const bool boundary = b == 0 || b == filler_count || filler[b - 1] == period;
    while (boundary && next_fact < fact_list.size() && (offsets[next_fact] <= b || b == filler_count)) {
      doc.fact_offsets.push_back(doc.ids.size());
      append(doc.ids, fact_list[next_fact]);
      ++next_fact;
    }
    if (b < filler_count) doc.ids.push_back(filler[b]);
  }
  return doc;
}

/// The words of `ids` joined by single spaces (BOS and EOS left out): text pith's word tokenizer
/// encodes back to the same ids.
inline std::string toy_text(std::span<const std::int32_t> ids) {
  static const std::vector<std::string> vocabulary = toy_vocabulary();
  std::string out;
  for (const std::int32_t id : ids) {
    if (id == toy_detail::bos || id == toy_detail::eos) continue;
    if (id < 0 || id >= toy_detail::vocabulary_size)
      PITH_THROW(argument_error, "toy_text: token " + std::to_string(id) + " is outside the toy vocabulary");
    if (!out.empty()) out += ' ';
    out += vocabulary[static_cast<std::size_t>(id)];
  }
  return out;
}

}  // namespace pith
