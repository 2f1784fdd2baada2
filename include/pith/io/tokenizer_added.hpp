// SPDX-License-Identifier: MIT
// Added and special tokens: the tokens text names as a whole, and the leftmost-longest matcher that cuts them out before a vocabulary's model runs.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pith {

/// A token that text can name as a whole: `special` is true for control tokens (BOS, EOS,
/// <|eot_id|>, <start_of_turn>: decode() drops them) and false for added tokens that are ordinary
/// text (Qwen's <think>, Gemma's "\n\n").
struct special_token {
  std::int32_t id = -1;
  std::string text;
  bool special = true;
};

/// Finds added tokens in a text the way Hugging Face tokenizers and llama.cpp do (notes/tokenizers.md
/// §1.1, §3.3): the leftmost position where some token starts wins, and there the longest token.
/// A byte trie walked from each position whose byte starts some token; a match costs one hash
/// lookup per byte of the longest candidate.
class added_token_matcher {
 public:
  /// A token found in a text: bytes [begin, end), the id, and the index of the token in the list
  /// given to add() (its flags stay with the caller).
  struct match {
    std::size_t begin = 0;
    std::size_t end = 0;
    std::int32_t id = -1;
    std::size_t index = 0;
  };

  /// Adds `text` as token `id` (an empty text is ignored); a text added twice keeps its first add().
  void add(std::string_view text, std::int32_t id) {
    if (text.empty()) {
      ids_.push_back(id);  // keeps match::index equal to the add() call's number
      return;
    }
    std::int32_t node = 0;
    for (const char c : text) {
      const auto byte = static_cast<unsigned char>(c);
      const std::uint64_t key = edge_key(node, byte);
      const auto found = edges_.find(key);
      if (found != edges_.end()) {
        node = found->second;
      } else {
        const auto child = static_cast<std::int32_t>(terminal_.size());
        terminal_.push_back(-1);
        edges_.emplace(key, child);
        node = child;
      }
    }
    if (terminal_[static_cast<std::size_t>(node)] < 0)
      terminal_[static_cast<std::size_t>(node)] = static_cast<std::int32_t>(ids_.size());
    ids_.push_back(id);
    starts_[static_cast<unsigned char>(text.front())] = true;
  }

  bool empty() const noexcept { return ids_.empty(); }

  /// The leftmost-longest token in `text` at or after byte `from`; end == begin == text.size()
  /// and id -1 when there is none.
  match find(std::string_view text, std::size_t from = 0) const {
    for (std::size_t begin = from; begin < text.size(); ++begin) {
      if (!starts_[static_cast<unsigned char>(text[begin])]) continue;
      std::int32_t node = 0;
      std::int32_t best = -1;
      std::size_t best_end = begin;
      for (std::size_t i = begin; i < text.size(); ++i) {
        const auto found = edges_.find(edge_key(node, static_cast<unsigned char>(text[i])));
        if (found == edges_.end()) break;
        node = found->second;
        if (terminal_[static_cast<std::size_t>(node)] >= 0) {
          best = terminal_[static_cast<std::size_t>(node)];
          best_end = i + 1;
        }
      }
      if (best >= 0) return {begin, best_end, ids_[static_cast<std::size_t>(best)], static_cast<std::size_t>(best)};
    }
    return {text.size(), text.size(), -1, 0};
  }

 private:
  static std::uint64_t edge_key(std::int32_t node, unsigned char byte) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(node)) << 8) | byte;
  }

  std::unordered_map<std::uint64_t, std::int32_t> edges_;  // (node, byte) → child node
  std::vector<std::int32_t> terminal_ = {-1};               // node → index into ids_, or -1
  std::vector<std::int32_t> ids_;                           // add() call → token id
  std::array<bool, 256> starts_{};                          // bytes that begin some token
};

}  // namespace pith
