// SPDX-License-Identifier: MIT
// Tables of the BPE tokenizer: GPT-2's byte alphabet, merge rules by pair, a compact string index, and the pre-tokenizers GGUF files name.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pith/io/tokenizer_utf8.hpp"

namespace pith {

namespace bpe_detail {

/// GPT-2's byte ↔ character alphabet (notes/tokenizers.md §1.4): bytes 21-7E, A1-AC and AE-FF
/// stand for themselves; the other 68, in increasing order, for U+0100, U+0101, ...
struct byte_alphabet {
  std::array<std::string, 256> text;    // byte → UTF-8 of its character
  std::array<std::int16_t, 0x144> byte;  // code point → byte, -1 where none
};

inline const byte_alphabet& alphabet() {
  static const byte_alphabet table = [] {
    byte_alphabet out;
    out.byte.fill(-1);
    int next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const bool itself = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      const int code_point = itself ? b : next++;
      std::string utf8;
      if (code_point < 0x80) {
        utf8 += static_cast<char>(code_point);
      } else {
        utf8 += static_cast<char>(0xc0 | (code_point >> 6));
        utf8 += static_cast<char>(0x80 | (code_point & 0x3f));
      }
      out.text[static_cast<std::size_t>(b)] = utf8;
      out.byte[static_cast<std::size_t>(code_point)] = static_cast<std::int16_t>(b);
    }
    return out;
  }();
  return table;
}

/// The raw bytes a byte-level piece stands for; nullopt when a character is outside the alphabet.
inline std::optional<std::string> bytes_of_piece(std::string_view piece) {
  const byte_alphabet& table = alphabet();
  std::string out;
  out.reserve(piece.size());
  for (std::size_t i = 0; i < piece.size();) {
    const std::int32_t code_point = utf8_code_point(piece.substr(i));
    if (code_point < 0 || code_point >= 0x144 || table.byte[static_cast<std::size_t>(code_point)] < 0)
      return std::nullopt;
    out += static_cast<char>(table.byte[static_cast<std::size_t>(code_point)]);
    i += utf8_next(piece.substr(i)).length;
  }
  return out;
}

/// The byte a piece spelled "<0xHH>" stands for, else -1.
inline int byte_piece_value(std::string_view piece) noexcept {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/// Merge rules keyed by the ids of the pair, stored by left id (compressed rows): the rules of one
/// left token lie together, sorted by the right id, so the rules of the frequent tokens stay in cache
/// (a hash table over all pairs spread them over 16 MiB and missed the cache on nearly every lookup).
class merge_table {
 public:
  struct rule {
    std::int32_t right = 0;
    std::int32_t rank = 0;
    std::int32_t id = 0;  // the merged token
  };

  void reserve(std::size_t rules) { pending_.reserve(rules); }
  /// Adds a rule; build() keeps the lowest rank of a pair given twice.
  void insert(std::int32_t left, std::int32_t right, std::int32_t rank, std::int32_t id) {
    pending_.push_back({left, {right, rank, id}});
  }
  /// Sorts the rules into rows; call once after the last insert.
  void build() {
    std::sort(pending_.begin(), pending_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second.right != b.second.right ? a.second.right < b.second.right
                                                                                        : a.second.rank < b.second.rank;
    });
    const std::int32_t rows = pending_.empty() ? 0 : pending_.back().first + 1;
    starts_.assign(static_cast<std::size_t>(rows) + 1, 0);
    rules_.clear();
    rules_.reserve(pending_.size());
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      if (i > 0 && pending_[i].first == pending_[i - 1].first && pending_[i].second.right == pending_[i - 1].second.right)
        continue;  // the same pair again, with a higher rank
      rules_.push_back(pending_[i].second);
      ++starts_[static_cast<std::size_t>(pending_[i].first) + 1];
    }
    for (std::size_t row = 1; row < starts_.size(); ++row) starts_[row] += starts_[row - 1];
    pending_.clear();
    pending_.shrink_to_fit();
  }
  const rule* find(std::int32_t left, std::int32_t right) const noexcept {
    if (left < 0 || static_cast<std::size_t>(left) + 1 >= starts_.size()) return nullptr;
    const rule* begin = rules_.data() + starts_[static_cast<std::size_t>(left)];
    const rule* end = rules_.data() + starts_[static_cast<std::size_t>(left) + 1];
    const rule* found = std::lower_bound(begin, end, right, [](const rule& r, std::int32_t value) { return r.right < value; });
    return found != end && found->right == right ? found : nullptr;
  }
  std::size_t size() const noexcept { return rules_.size(); }

 private:
  std::vector<std::pair<std::int32_t, rule>> pending_;  // (left, rule) until build()
  std::vector<std::uint32_t> starts_;                  // left id → first rule; starts_[left + 1] ends the row
  std::vector<rule> rules_;
};

/// Strings → int32, for vocabularies of a few hundred thousand entries: the keys are stored one
/// after another in one buffer and the table holds entry numbers (open addressing, linear probing,
/// at most half full), so building and looking up touch few cache lines.
class string_index {
 public:
  void reserve(std::size_t entries) {
    starts_.reserve(entries + 1);
    values_.reserve(entries);
    rehash(entries * 2);
  }
  /// Maps `key` to `value`, replacing an earlier value.
  void insert_or_assign(std::string_view key, std::int32_t value) {
    if ((values_.size() + 1) * 2 > slots_.size()) rehash(std::max<std::size_t>(64, slots_.size() * 2));
    std::size_t slot = probe(key);
    if (slots_[slot] != 0) {
      values_[slots_[slot] - 1] = value;
      return;
    }
    keys_.append(key);
    starts_.push_back(keys_.size());
    values_.push_back(value);
    slots_[slot] = static_cast<std::uint32_t>(values_.size());
  }
  /// Adds `key` unless present.
  void insert(std::string_view key, std::int32_t value) {
    if (!find(key)) insert_or_assign(key, value);
  }
  std::optional<std::int32_t> find(std::string_view key) const noexcept {
    if (slots_.empty()) return std::nullopt;
    const std::uint32_t entry = slots_[probe(key)];
    if (entry == 0) return std::nullopt;
    return values_[entry - 1];
  }
  std::size_t size() const noexcept { return values_.size(); }
  /// Calls visit(key, value) for every entry in insertion order.
  template <class Visit>
  void for_each(Visit&& visit) const {
    for (std::size_t i = 0; i < values_.size(); ++i)
      visit(std::string_view(keys_).substr(starts_[i], starts_[i + 1] - starts_[i]), values_[i]);
  }

 private:
  std::string_view key_of(std::uint32_t entry) const noexcept {
    return std::string_view(keys_).substr(starts_[entry - 1], starts_[entry] - starts_[entry - 1]);
  }
  // The slot holding `key`, or the empty slot where it would go.
  std::size_t probe(std::string_view key) const noexcept {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t slot = std::hash<std::string_view>{}(key) & mask;; slot = (slot + 1) & mask)
      if (slots_[slot] == 0 || key_of(slots_[slot]) == key) return slot;
  }
  void rehash(std::size_t wanted) {
    std::size_t size = 64;
    while (size < wanted) size *= 2;
    if (size <= slots_.size()) return;
    slots_.assign(size, 0);
    for (std::size_t entry = 1; entry <= values_.size(); ++entry)
      slots_[probe(key_of(static_cast<std::uint32_t>(entry)))] = static_cast<std::uint32_t>(entry);
  }

  std::string keys_;                       // every key, one after another
  std::vector<std::size_t> starts_ = {0};  // entry i's key is keys_[starts_[i], starts_[i + 1])
  std::vector<std::int32_t> values_;
  std::vector<std::uint32_t> slots_;  // entry number + 1, 0 where empty
};

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
};
template <class Value>
using string_map = std::unordered_map<std::string, Value, string_hash, std::equal_to<>>;

}  // namespace bpe_detail

}  // namespace pith

namespace pith::bpe_detail {

/// GPT-2's pre-tokenizer regex (Hugging Face's ByteLevel with use_regex).
inline constexpr const char* gpt2_pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/// What a GGUF tokenizer.ggml.pre value stands for in llama.cpp (notes/tokenizers.md §3.2): the
/// regexes applied in turn (each splits every piece of the one before), with its flags.
struct gguf_pre {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;  // the default of tokenizer.ggml.add_bos_token
  bool nfc = false;      // Qwen's NFC normalizer, which llama.cpp leaves out
};

inline constexpr const char* gguf_pre_names =
    "llama-bpe, llama3, llama-v3, falcon3, falcon-h1, pixtral, midm-2.0, lfm2, qwen2, deepseek-r1-qwen, megrez, kormo, "
    "gpt-2, phi-2, gigachat, roberta-bpe, jina-*, smollm, starcoder, refact, command-r, codeshell, exaone, minerva-7b, tekken";

/// The pre-tokenizer of `pre`, or nullopt for a value pith does not know.
inline std::optional<gguf_pre> gguf_pre_tokenizer(const std::string& pre) {
  const auto one_of = [&](std::initializer_list<const char*> names) {
    return std::any_of(names.begin(), names.end(), [&](const char* name) { return pre == name; });
  };
  static constexpr const char* llama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static constexpr const char* qwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  // llama.cpp's GPT-2 list ends before GPT-2's final |\s+.
  static constexpr const char* gpt2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
  static constexpr const char* tekken =
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"
      "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (one_of({"llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"}))
    return gguf_pre{{llama3}, true, true, false};
  if (one_of({"qwen2", "deepseek-r1-qwen", "megrez", "kormo"})) return gguf_pre{{qwen2}, false, false, true};
  if (one_of({"gpt-2", "phi-2", "gigachat", "roberta-bpe"}) || pre.rfind("jina-", 0) == 0) return gguf_pre{{gpt2}, false, false, false};
  if (one_of({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}))
    return gguf_pre{{"\\p{N}", gpt2}, false, false, false};
  if (pre == "tekken") return gguf_pre{{tekken}, true, true, false};
  return std::nullopt;
}

}  // namespace pith::bpe_detail
