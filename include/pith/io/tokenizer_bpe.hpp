// SPDX-License-Identifier: MIT
// bpe_tokenizer: byte-level BPE (tokenizer.json of Llama 3 and Qwen2/3, GGUF "gpt2") and BPE with byte fallback (Gemma 3), on PCRE2 and utf8proc (CMake target pith::bpe).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/gguf.hpp"
#include "pith/io/mmap.hpp"
#include "pith/io/tokenizer.hpp"
#include "pith/io/tokenizer_added.hpp"
#include "pith/io/tokenizer_bpe_tables.hpp"
#include "pith/io/tokenizer_unicode.hpp"
#include "pith/io/tokenizer_utf8.hpp"

namespace pith {


/// Byte-pair encoding as Hugging Face tokenizers run it from a tokenizer.json, and as llama.cpp
/// runs GGUF "gpt2" vocabularies (notes/tokenizers.md §1-3). Encoding a text:
///  1. ill-formed UTF-8 becomes U+FFFD (each maximal subpart once, utf8_repair), as decoding the
///     bytes into a string does before the reference sees them;
///  2. added tokens are cut out, leftmost-longest (special ones only when parse_special);
///     lstrip/rstrip take the whitespace next to them;
///  3. each stretch between them is normalized (NFC for Qwen; "▁" for spaces for Gemma 3), then
///     added tokens marked `normalized` are cut out of it;
///  4. the pre-tokenizer cuts each stretch into words (Split with a PCRE2 regex, ByteLevel,
///     Digits, Metaspace);
///  5. each word is merged: byte-level vocabularies start from one symbol per byte (the byte's
///     character in GPT-2's alphabet), others from one per character, a character missing from
///     the vocabulary becoming its <0xHH> byte tokens (byte_fallback) or the unknown token; the
///     adjacent pair with the lowest merge rank is merged first (ties: the leftmost), until no
///     pair has a rule. With ignore_merges a word that is itself in the vocabulary is one token;
///  6. with add_special, the post-processor's tokens go around the text (Gemma 3: BOS).
/// Words up to 256 bytes are cached (word → ids), which makes repeated words cost a lookup.
///
/// Decoding maps a byte-level token back to its bytes, a <0xHH> token to its byte, "▁" to a space
/// (the decoder's Replace), drops special tokens and gives other added tokens as written.
///
/// Needs PCRE2 and utf8proc (the CMake target pith::bpe). Reach it through pith::tokenizer with
/// make_tokenizer() or load_tokenizer(). encode and decode are const and may run concurrently.
class bpe_tokenizer final : public tokenizer_model {
 public:
  /// Reads a Hugging Face tokenizer.json; tokenizer_config.json beside it, when present, names BOS
  /// and EOS (bos_token, eos_token). format_error for invalid JSON, config_error naming the file
  /// and the key for a missing or unsupported part (the message names the part: a normalizer,
  /// pre-tokenizer, model, post-processor or decoder type pith does not implement).
  static bpe_tokenizer load_json(const std::filesystem::path& path) {
    const std::string text = read_regular_file(path);
    std::string config;
    const std::filesystem::path config_path = path.parent_path() / "tokenizer_config.json";
    std::error_code ignored;
    if (std::filesystem::is_regular_file(config_path, ignored)) config = read_regular_file(config_path);
    return parse_json(text, config, path.string());
  }

  /// The same from text: `config_json` is the tokenizer_config.json text or empty.
  static bpe_tokenizer parse_json(std::string_view json_text, std::string_view config_json, const std::string& source) {
    bpe_tokenizer out;
    out.source_ = source;
    out.read_json(detail::parse_json(json_text, source));
    if (!config_json.empty()) out.read_config(detail::parse_json(config_json, source + " (tokenizer_config.json)"));
    out.finish();
    return out;
  }

  /// The vocabulary of a GGUF file whose tokenizer.ggml.model is "gpt2": tokens, merges
  /// ("left right" strings, rank = position), token_type (CONTROL, USER_DEFINED and UNKNOWN
  /// tokens are found in text as a whole), bos/eos/unknown ids, add_bos_token / add_eos_token, and
  /// tokenizer.ggml.pre, which names the pre-tokenizer regexes (notes §3.2): llama-bpe and its
  /// aliases, qwen2 and its aliases (with Qwen's NFC, which llama.cpp leaves out), gpt-2 and its
  /// aliases, smollm and its aliases, tekken. Another value is config_error naming it.
  static bpe_tokenizer from_gguf(const gguf_file& file) {
    const auto fail = [&](const std::string& message) { PITH_THROW(config_error, file.path() + ": " + message); };
    const std::string& model = file.get_string("tokenizer.ggml.model");
    if (model != "gpt2")
      fail("tokenizer.ggml.model = " + detail::quoted(model) + " is not byte-level BPE ('gpt2')");
    bpe_tokenizer out;
    out.source_ = file.path();
    const auto& tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
    if (tokens.empty() || tokens.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() / 2))
      fail("tokenizer.ggml.tokens holds " + std::to_string(tokens.size()) + " tokens");
    std::vector<std::int32_t> types(tokens.size(), 1);
    if (file.has("tokenizer.ggml.token_type")) {
      types = file.get_array<std::int32_t>("tokenizer.ggml.token_type");
      if (types.size() != tokens.size())
        fail("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
             std::to_string(tokens.size()) + " tokens");
    }
    out.pieces_ = tokens;
    out.kinds_.assign(tokens.size(), kind::normal);
    for (std::size_t id = 0; id < tokens.size(); ++id) {
      const auto signed_id = static_cast<std::int32_t>(id);
      switch (types[id]) {
        case 2:  // UNKNOWN
        case 3:  // CONTROL
          out.add_added_token(signed_id, tokens[id], true, false, false, false);
          break;
        case 4:  // USER_DEFINED: plain text, always found in text
          out.add_added_token(signed_id, tokens[id], false, false, false, false);
          break;
        case 5:  // UNUSED ([PAD151669]): never produced by text
          out.kinds_[id] = kind::unused;
          break;
        default:
          out.vocab_.insert(tokens[id], signed_id);
          break;
      }
    }
    const auto& merges = file.get_array<std::string>("tokenizer.ggml.merges");
    out.merges_.reserve(merges.size());
    std::string joined;
    for (std::size_t rank = 0; rank < merges.size(); ++rank) {
      const std::size_t space = merges[rank].size() > 1 ? merges[rank].find(' ', 1) : std::string::npos;
      if (space == std::string::npos)
        fail("tokenizer.ggml.merges[" + std::to_string(rank) + "] = " + detail::quoted(merges[rank]) +
             " is not two tokens separated by a space");
      const std::string_view merge = merges[rank];
      out.add_merge(merge.substr(0, space), merge.substr(space + 1), rank, joined);
    }
    out.byte_level_ = true;

    const std::string pre = file.get_or<std::string>("tokenizer.ggml.pre", "default");
    const auto pre_tokenizer = bpe_detail::gguf_pre_tokenizer(pre);
    if (!pre_tokenizer)
      fail("tokenizer.ggml.pre = " + detail::quoted(pre) + " is not a pre-tokenizer pith knows (" +
           bpe_detail::gguf_pre_names + ")");
    out.ignore_merges_ = pre_tokenizer->ignore_merges;
    if (pre_tokenizer->nfc) out.normalizers_.push_back(normalizer_step{});
    for (const std::string& pattern : pre_tokenizer->regexes)
      out.pre_steps_.push_back(pre_step::split(std::make_shared<unicode::regex>(
          unicode::oniguruma_to_pcre2(pattern, file.path()), file.path()), split_behavior::isolated, false));

    const auto size = static_cast<std::int64_t>(tokens.size());
    const auto id_of = [&](const char* key) -> std::int32_t {
      if (!file.has(key)) return -1;
      const std::int64_t id = file.get_integer(key);
      if (id < 0 || id >= size)
        fail(std::string(key) + " = " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(size));
      return static_cast<std::int32_t>(id);
    };
    out.bos_ = id_of("tokenizer.ggml.bos_token_id");
    out.eos_ = id_of("tokenizer.ggml.eos_token_id");
    out.unk_ = id_of("tokenizer.ggml.unknown_token_id");
    if (file.get_or<bool>("tokenizer.ggml.add_bos_token", pre_tokenizer->add_bos) && out.bos_ >= 0) out.prefix_.push_back(out.bos_);
    if (file.get_or<bool>("tokenizer.ggml.add_eos_token", false) && out.eos_ >= 0) out.suffix_.push_back(out.eos_);
    out.decoder_.byte_level = true;
    out.finish();
    return out;
  }

  bpe_tokenizer(bpe_tokenizer&&) noexcept = default;
  bpe_tokenizer& operator=(bpe_tokenizer&&) noexcept = default;

  // ---- tokenizer_model ------------------------------------------------------------------------

  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override {
    std::vector<std::int32_t> out;
    if (add_special) out = prefix_;
    encode_text(text, true, parse_special, out);
    if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
    return out;
  }

  void encode_part(std::string_view text, bool first, std::vector<std::int32_t>& out) const override {
    encode_text(text, first, true, out);
  }

  /// Safe cuts: after a character that is an added token by itself (Gemma's "\n"), and, when the
  /// pre-tokenizer always starts a word there (checked on probes at load), between a line feed and
  /// a letter or number; never between two characters that stand side by side in an added token.
  bool can_cut(std::string_view left, std::string_view right) const override {
    if (std::binary_search(added_pairs_.begin(), added_pairs_.end(), pair_key(left, right))) return false;
    if (std::binary_search(single_added_.begin(), single_added_.end(), left)) return true;
    return newline_cuts_ && left == "\n" && unicode::is_letter_or_number(right);
  }

  std::string decode(std::int32_t prev_token, std::int32_t token) const override {
    check_id(token);
    const auto id = static_cast<std::size_t>(token);
    switch (kinds_[id]) {
      case kind::special:
      case kind::unused:
        return {};
      case kind::added:
        if (decoder_.byte_level) return pieces_[id];
        break;
      default:
        break;
    }
    const std::string& piece = pieces_[id];
    if (decoder_.byte_level) {
      const auto& table = bpe_detail::alphabet();
      std::string out;
      out.reserve(piece.size());
      for (std::size_t i = 0; i < piece.size();) {
        const std::size_t length = std::max<std::size_t>(1, utf8_next(std::string_view(piece).substr(i)).length);
        const std::int32_t code_point = unicode::first_code_point(std::string_view(piece).substr(i));
        if (code_point >= 0 && code_point < 0x144 && table.byte[static_cast<std::size_t>(code_point)] >= 0)
          out += static_cast<char>(table.byte[static_cast<std::size_t>(code_point)]);
        else
          out.append(piece, i, length);  // a character outside the alphabet stands for itself
        i += length;
      }
      return out;
    }
    if (decoder_.byte_fallback) {
      const int value = bpe_detail::byte_piece_value(piece);
      if (value >= 0) return std::string(1, static_cast<char>(value));
    }
    std::string out = piece;
    for (const auto& [from, to] : decoder_.replacements) {
      std::string replaced;
      for (std::size_t i = 0; i < out.size();) {
        if (!from.empty() && out.compare(i, from.size(), from) == 0) {
          replaced += to;
          i += from.size();
        } else {
          replaced += out[i++];
        }
      }
      out = std::move(replaced);
    }
    const bool starts_text = prev_token < 0 || (prev_token == bos_ && bos_ >= 0);
    if (starts_text && !decoder_.strip_start.empty())
      for (std::size_t n = 0; n < decoder_.strip_count && out.compare(0, decoder_.strip_start.size(), decoder_.strip_start) == 0; ++n)
        out.erase(0, decoder_.strip_start.size());
    return out;
  }

  std::int32_t vocab_size() const noexcept override { return static_cast<std::int32_t>(pieces_.size()); }
  std::int32_t bos_id() const noexcept override { return bos_; }
  std::int32_t eos_id() const noexcept override { return eos_; }
  std::vector<std::int32_t> special_prefix() const override { return prefix_; }
  std::vector<std::int32_t> special_suffix() const override { return suffix_; }

  std::optional<std::int32_t> token_id(std::string_view text) const override {
    if (const auto found = added_ids_.find(text); found != added_ids_.end()) return found->second;
    return vocab_.find(text);
  }
  std::string token_text(std::int32_t id) const override {
    check_id(id);
    return pieces_[static_cast<std::size_t>(id)];
  }
  std::vector<special_token> special_tokens() const override {
    std::vector<special_token> out;
    for (const added_token& token : added_) out.push_back({token.id, token.text, token.special});
    std::sort(out.begin(), out.end(), [](const special_token& a, const special_token& b) { return a.id < b.id; });
    return out;
  }

  /// Whether words are merged from bytes (GPT-2's alphabet) rather than characters.
  bool byte_level() const noexcept { return byte_level_; }
  std::size_t merge_count() const noexcept { return merges_.size(); }
  /// Where the vocabulary was read from (a file name), as error messages name it.
  const std::string& source() const noexcept { return source_; }

 private:
  enum class kind : std::uint8_t { normal, special, added, unused };
  enum class split_behavior : std::uint8_t { removed, isolated, merged_with_previous, merged_with_next, contiguous };

  struct added_token {
    std::int32_t id = -1;
    std::string text;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
  };

  struct normalizer_step {
    enum class type : std::uint8_t { normal_form, replace, prepend, lowercase } what = type::normal_form;
    unicode::normal_form form = unicode::normal_form::nfc;
    std::shared_ptr<unicode::regex> pattern;  // replace: the pattern (a literal one is escaped)
    std::string text;                         // replace: the content; prepend: the prefix
  };

  struct pre_step {
    enum class type : std::uint8_t { split, byte_level, metaspace } what = type::split;
    std::shared_ptr<unicode::regex> pattern;  // split; byte_level with use_regex (GPT-2's pattern)
    split_behavior behavior = split_behavior::isolated;
    bool invert = false;
    bool add_prefix_space = false;  // byte_level
    std::string replacement;        // metaspace: "▁"
    std::string prepend_scheme;     // metaspace: always, first, never
    bool metaspace_split = false;

    static pre_step split(std::shared_ptr<unicode::regex> pattern, split_behavior behavior, bool invert) {
      pre_step step;
      step.pattern = std::move(pattern);
      step.behavior = behavior;
      step.invert = invert;
      return step;
    }
  };

  struct decoder_chain {
    bool byte_level = false;
    bool byte_fallback = false;
    std::vector<std::pair<std::string, std::string>> replacements;  // in order
    std::string strip_start;   // Strip / Metaspace: removed from the start of a text
    std::size_t strip_count = 0;
  };

  // The merge loop's symbols and queue; one per encode call, reused for every word.
  struct scratch {
    struct symbol {
      std::int32_t id;
      std::int32_t prev;
      std::int32_t next;
      bool alive;
    };
    struct candidate {
      std::int32_t rank;
      std::int32_t position;
      std::int32_t id;     // the merged token
      std::int32_t left;   // the pair's ids when queued: a change since makes the candidate stale
      std::int32_t right;
    };
    std::vector<symbol> symbols;
    std::vector<candidate> heap;
    std::vector<std::int32_t> ids;
    std::vector<std::string_view> words, next_words;
    std::vector<std::unique_ptr<std::string>> owned;  // texts a pre-tokenizer step rewrote
  };

  // Words up to max_word_bytes and their ids, direct-mapped by the word's hash: a word takes the slot
  // of the one before it, so the cache never grows or stops to clear, and after the first fills
  // its slots reuse their buffers.
  struct word_cache {
    static constexpr std::size_t slots = 1 << 16;
    static constexpr std::size_t max_word_bytes = 256;
    struct slot {
      std::string word;
      std::vector<std::int32_t> ids;
    };
    std::mutex mutex;
    std::vector<slot> entries = std::vector<slot>(slots);
  };

  bpe_tokenizer() : cache_(std::make_unique<word_cache>()) {}

  // ---- reading tokenizer.json -------------------------------------------------------------------

  [[noreturn]] void fail(const std::string& message) const { PITH_THROW(config_error, source_ + ": " + message); }

  // Ids at or above this, for `entries` tokens, would leave most of the id range unused (and make
  // the id table huge): real files number their tokens densely.
  static std::int64_t sparse_limit(std::size_t entries) { return 4 * static_cast<std::int64_t>(entries) + 1024; }

  static const nlohmann::json* member(const nlohmann::json& object, const char* key) {
    if (!object.is_object()) return nullptr;
    const auto found = object.find(key);
    return found == object.end() || found->is_null() ? nullptr : &*found;
  }
  std::string string_member(const nlohmann::json& object, const char* key, const std::string& where) const {
    const nlohmann::json* value = member(object, key);
    if (value == nullptr || !value->is_string()) fail(where + "." + key + " is missing or not a string");
    return value->get<std::string>();
  }
  bool bool_member(const nlohmann::json& object, const char* key, bool fallback, const std::string& where) const {
    const nlohmann::json* value = member(object, key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) fail(where + "." + key + " = " + detail::json_excerpt(*value) + " is not a boolean");
    return value->get<bool>();
  }
  std::string type_of(const nlohmann::json& object, const std::string& where) const {
    if (!object.is_object()) fail(where + " = " + detail::json_excerpt(object) + " is not an object");
    return string_member(object, "type", where);
  }

  // A pattern object {"String": s} or {"Regex": r} compiled for PCRE2.
  std::shared_ptr<unicode::regex> pattern_of(const nlohmann::json& object, const std::string& where) const {
    const nlohmann::json* pattern = member(object, "pattern");
    if (pattern == nullptr || !pattern->is_object()) fail(where + ".pattern is missing or not an object");
    if (const nlohmann::json* literal = member(*pattern, "String"); literal != nullptr && literal->is_string()) {
      std::string escaped;
      for (const char c : literal->get<std::string>()) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) escaped += '\\';
        escaped += c;
      }
      if (escaped.empty()) fail(where + ".pattern.String is empty");
      return std::make_shared<unicode::regex>(escaped, source_ + " " + where);
    }
    if (const nlohmann::json* regex = member(*pattern, "Regex"); regex != nullptr && regex->is_string())
      return std::make_shared<unicode::regex>(unicode::oniguruma_to_pcre2(regex->get<std::string>(), source_ + " " + where),
                                              source_ + " " + where);
    fail(where + ".pattern = " + detail::json_excerpt(*pattern) + " is neither {\"String\": ...} nor {\"Regex\": ...}");
  }

  void read_json(const nlohmann::json& root) {
    if (!root.is_object()) fail("the tokenizer must be a JSON object");
    const nlohmann::json* model = member(root, "model");
    if (model == nullptr) fail("key 'model' is missing");
    read_model(*model);
    if (const nlohmann::json* added = member(root, "added_tokens")) {
      if (!added->is_array()) fail("added_tokens is not an array");
      for (std::size_t i = 0; i < added->size(); ++i) {
        const nlohmann::json& entry = (*added)[i];
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        const nlohmann::json* id = member(entry, "id");
        if (id == nullptr || !id->is_number_integer() || id->get<std::int64_t>() < 0 ||
            id->get<std::int64_t>() >= std::numeric_limits<std::int32_t>::max() / 2)
          fail(where + ".id is missing or not a token id");
        if (id->get<std::int64_t>() >= sparse_limit(vocab_.size() + added->size()))
          fail(where + ".id = " + std::to_string(id->get<std::int64_t>()) + " lies far beyond the " +
               std::to_string(vocab_.size()) + " tokens of the vocabulary");
        const std::string text = string_member(entry, "content", where);
        if (text.empty()) fail(where + ".content is empty");
        const bool special = bool_member(entry, "special", false, where);
        // The reference reads a missing "normalized" as the opposite of "special".
        add_added_token(static_cast<std::int32_t>(id->get<std::int64_t>()), text, special,
                        bool_member(entry, "lstrip", false, where), bool_member(entry, "rstrip", false, where),
                        bool_member(entry, "normalized", !special, where));
      }
    }
    read_merges(*model);
    if (const nlohmann::json* normalizer = member(root, "normalizer")) read_normalizer(*normalizer, "normalizer");
    if (const nlohmann::json* pre = member(root, "pre_tokenizer")) read_pre_tokenizer(*pre, "pre_tokenizer");
    if (const nlohmann::json* post = member(root, "post_processor")) {
      read_post_processor(*post, "post_processor", prefix_, suffix_);
      // The template's ids are written apart from the vocabulary and added_tokens: one beyond both would be
      // emitted by encode as a token the model has no embedding for.
      for (const std::vector<std::int32_t>* ids : {&prefix_, &suffix_})
        for (const std::int32_t id : *ids)
          if (id < 0 || id >= vocab_size())
            fail("post_processor adds token id " + std::to_string(id) + ", outside the vocabulary of " +
                 std::to_string(vocab_size()));
    }
    if (const nlohmann::json* decoder = member(root, "decoder")) read_decoder(*decoder, "decoder");
  }

  void read_model(const nlohmann::json& model) {
    const std::string type = member(model, "type") != nullptr ? type_of(model, "model") : "BPE";
    if (type != "BPE") fail("model.type = " + detail::quoted(type) + " is not supported (pith reads BPE models)");
    const nlohmann::json* vocab = member(model, "vocab");
    if (vocab == nullptr || !vocab->is_object()) fail("model.vocab is missing or not an object");
    std::int64_t largest = -1;
    vocab_.reserve(vocab->size());
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0 ||
          it->get<std::int64_t>() >= std::numeric_limits<std::int32_t>::max() / 2)
        fail("model.vocab[" + detail::json_excerpt(nlohmann::json(it.key())) + "] = " + detail::json_excerpt(*it) +
             " is not a token id");
      const auto id = static_cast<std::int32_t>(it->get<std::int64_t>());
      vocab_.insert_or_assign(it.key(), id);
      largest = std::max<std::int64_t>(largest, id);
    }
    if (largest >= sparse_limit(vocab_.size()))
      fail("model.vocab holds id " + std::to_string(largest) + " for " + std::to_string(vocab_.size()) +
           " entries: the ids must be dense");
    pieces_.assign(static_cast<std::size_t>(largest + 1), std::string());
    kinds_.assign(pieces_.size(), kind::unused);
    vocab_.for_each([&](std::string_view text, std::int32_t id) {
      pieces_[static_cast<std::size_t>(id)] = text;
      kinds_[static_cast<std::size_t>(id)] = kind::normal;
    });
    ignore_merges_ = bool_member(model, "ignore_merges", false, "model");
    byte_fallback_ = bool_member(model, "byte_fallback", false, "model");
    fuse_unknown_ = bool_member(model, "fuse_unk", false, "model");
    if (const nlohmann::json* unknown = member(model, "unk_token")) {
      if (!unknown->is_string()) fail("model.unk_token is not a string");
      unknown_text_ = unknown->get<std::string>();
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const nlohmann::json* affix = member(model, key);
      if (affix != nullptr && (!affix->is_string() || !affix->get<std::string>().empty()))
        fail(std::string("model.") + key + " = " + detail::json_excerpt(*affix) + " is not supported (only null or \"\")");
    }
    if (const nlohmann::json* dropout = member(model, "dropout"); dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0.0))
      fail("model.dropout = " + detail::json_excerpt(*dropout) + " is not supported (inference uses no dropout)");
  }

  // model.merges, read after the added tokens: the reference looks pieces up in a table where
  // added tokens override the vocabulary.
  void read_merges(const nlohmann::json& model) {
    const nlohmann::json* merges = member(model, "merges");
    if (merges == nullptr || !merges->is_array()) fail("model.merges is missing or not an array");
    merges_.reserve(merges->size());
    std::string joined;
    for (std::size_t rank = 0; rank < merges->size(); ++rank) {
      const nlohmann::json& merge = (*merges)[rank];
      if (merge.is_string()) {
        const std::string& text = merge.get_ref<const std::string&>();
        const std::size_t space = text.find(' ');
        if (space == std::string::npos) fail("model.merges[" + std::to_string(rank) + "] = " + detail::json_excerpt(merge) + " has no space");
        add_merge(std::string_view(text).substr(0, space), std::string_view(text).substr(space + 1), rank, joined);
      } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
        add_merge(merge[0].get_ref<const std::string&>(), merge[1].get_ref<const std::string&>(), rank, joined);
      } else {
        fail("model.merges[" + std::to_string(rank) + "] = " + detail::json_excerpt(merge) + " is not a merge");
      }
    }
  }

  // The rule `left right` of rank `rank` (`joined` is scratch). A rule over pieces outside the
  // vocabulary can never apply and is left out.
  void add_merge(std::string_view left, std::string_view right, std::size_t rank, std::string& joined) {
    joined.assign(left);
    joined.append(right);
    const auto a = vocab_.find(left), b = vocab_.find(right), merged = vocab_.find(joined);
    if (a && b && merged) merges_.insert(*a, *b, static_cast<std::int32_t>(rank), *merged);
  }

  void read_normalizer(const nlohmann::json& object, const std::string& where) {
    const std::string type = type_of(object, where);
    normalizer_step step;
    if (type == "Sequence") {
      const nlohmann::json* list = member(object, "normalizers");
      if (list == nullptr || !list->is_array()) fail(where + ".normalizers is missing or not an array");
      for (std::size_t i = 0; i < list->size(); ++i)
        if (!(*list)[i].is_null()) read_normalizer((*list)[i], where + ".normalizers[" + std::to_string(i) + "]");
      return;
    }
    if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
      step.form = type == "NFC" ? unicode::normal_form::nfc : type == "NFD" ? unicode::normal_form::nfd
                  : type == "NFKC" ? unicode::normal_form::nfkc : unicode::normal_form::nfkd;
    } else if (type == "Replace") {
      step.what = normalizer_step::type::replace;
      step.pattern = pattern_of(object, where);
      step.text = string_member(object, "content", where);
      if (const nlohmann::json* literal = member(*member(object, "pattern"), "String");
          literal == nullptr || literal->get<std::string>().find('\n') != std::string::npos)
        newline_cuts_allowed_ = false;  // a regex or a line feed could join text across a cut
    } else if (type == "Prepend") {
      step.what = normalizer_step::type::prepend;
      step.text = string_member(object, "prepend", where);
      newline_cuts_allowed_ = false;
    } else if (type == "Lowercase") {
      step.what = normalizer_step::type::lowercase;
    } else {
      fail(where + ".type = " + detail::quoted(type) +
           " is not supported (pith normalizes with NFC, NFD, NFKC, NFKD, Replace, Prepend, Lowercase, Sequence)");
    }
    normalizers_.push_back(std::move(step));
  }

  void read_pre_tokenizer(const nlohmann::json& object, const std::string& where) {
    const std::string type = type_of(object, where);
    if (type == "Sequence") {
      const nlohmann::json* list = member(object, "pretokenizers");
      if (list == nullptr || !list->is_array()) fail(where + ".pretokenizers is missing or not an array");
      for (std::size_t i = 0; i < list->size(); ++i)
        read_pre_tokenizer((*list)[i], where + ".pretokenizers[" + std::to_string(i) + "]");
      return;
    }
    if (type == "Split") {
      const std::string behavior = string_member(object, "behavior", where);
      split_behavior b = split_behavior::isolated;
      if (behavior == "Removed") b = split_behavior::removed;
      else if (behavior == "Isolated") b = split_behavior::isolated;
      else if (behavior == "MergedWithPrevious") b = split_behavior::merged_with_previous;
      else if (behavior == "MergedWithNext") b = split_behavior::merged_with_next;
      else if (behavior == "Contiguous") b = split_behavior::contiguous;
      else fail(where + ".behavior = " + detail::quoted(behavior) + " is not a split behaviour");
      pre_steps_.push_back(pre_step::split(pattern_of(object, where), b, bool_member(object, "invert", false, where)));
      return;
    }
    if (type == "ByteLevel") {
      pre_step step;
      step.what = pre_step::type::byte_level;
      step.add_prefix_space = bool_member(object, "add_prefix_space", false, where);
      if (step.add_prefix_space) newline_cuts_allowed_ = false;
      if (bool_member(object, "use_regex", true, where))
        step.pattern = std::make_shared<unicode::regex>(unicode::oniguruma_to_pcre2(bpe_detail::gpt2_pattern, source_),
                                                        source_ + " " + where);
      pre_steps_.push_back(std::move(step));
      byte_level_ = true;
      return;
    }
    if (type == "Digits") {
      // The reference's \d: ASCII digits, one word per digit or per run of them.
      const bool individual = bool_member(object, "individual_digits", false, where);
      pre_steps_.push_back(pre_step::split(std::make_shared<unicode::regex>(individual ? "[0-9]" : "[0-9]+", source_ + " " + where),
                                           split_behavior::isolated, false));
      return;
    }
    if (type == "Metaspace") {
      pre_step step;
      step.what = pre_step::type::metaspace;
      step.replacement = member(object, "replacement") != nullptr ? string_member(object, "replacement", where) : "\xE2\x96\x81";
      step.prepend_scheme = member(object, "prepend_scheme") != nullptr ? string_member(object, "prepend_scheme", where)
                            : bool_member(object, "add_prefix_space", true, where) ? "always" : "never";
      if (step.prepend_scheme != "always" && step.prepend_scheme != "first" && step.prepend_scheme != "never")
        fail(where + ".prepend_scheme = " + detail::quoted(step.prepend_scheme) + " is not always, first or never");
      step.metaspace_split = bool_member(object, "split", false, where);
      newline_cuts_allowed_ = false;
      pre_steps_.push_back(std::move(step));
      return;
    }
    fail(where + ".type = " + detail::quoted(type) +
         " is not supported (pith pre-tokenizes with Split, ByteLevel, Digits, Metaspace, Sequence)");
  }

  // The tokens a post-processor puts before and after a single text.
  void read_post_processor(const nlohmann::json& object, const std::string& where, std::vector<std::int32_t>& prefix,
                           std::vector<std::int32_t>& suffix) {
    const std::string type = type_of(object, where);
    if (type == "ByteLevel") return;  // offsets only
    if (type == "Sequence") {
      const nlohmann::json* list = member(object, "processors");
      if (list == nullptr || !list->is_array()) fail(where + ".processors is missing or not an array");
      for (std::size_t i = 0; i < list->size(); ++i) {
        std::vector<std::int32_t> before, after;
        read_post_processor((*list)[i], where + ".processors[" + std::to_string(i) + "]", before, after);
        prefix.insert(prefix.begin(), before.begin(), before.end());  // a later processor wraps the earlier result
        suffix.insert(suffix.end(), after.begin(), after.end());
      }
      return;
    }
    if (type == "TemplateProcessing") {
      const nlohmann::json* single = member(object, "single");
      const nlohmann::json* specials = member(object, "special_tokens");
      if (single == nullptr || !single->is_array()) fail(where + ".single is missing or not an array");
      bool seen_sequence = false;
      for (std::size_t i = 0; i < single->size(); ++i) {
        const nlohmann::json& item = (*single)[i];
        const std::string at = where + ".single[" + std::to_string(i) + "]";
        if (member(item, "Sequence") != nullptr) {
          seen_sequence = true;
          continue;
        }
        const nlohmann::json* special = member(item, "SpecialToken");
        if (special == nullptr) fail(at + " is neither a Sequence nor a SpecialToken");
        const std::string name = string_member(*special, "id", at + ".SpecialToken");
        const nlohmann::json* entry = specials != nullptr ? member(*specials, name.c_str()) : nullptr;
        const nlohmann::json* ids = entry != nullptr ? member(*entry, "ids") : nullptr;
        if (ids == nullptr || !ids->is_array()) fail(where + ".special_tokens has no ids for " + detail::quoted(name));
        for (const nlohmann::json& id : *ids) {
          if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= std::numeric_limits<std::int32_t>::max())
            fail(where + ".special_tokens[" + detail::quoted(name) + "].ids holds " + detail::json_excerpt(id));
          (seen_sequence ? suffix : prefix).push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
        }
      }
      return;
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
      for (const char* key : {"cls", "sep"}) {
        const nlohmann::json* pair = member(object, key);
        if (pair == nullptr || !pair->is_array() || pair->size() != 2 || !(*pair)[1].is_number_integer())
          fail(where + "." + key + " is not [text, id]");
        (std::string(key) == "cls" ? prefix : suffix).push_back(static_cast<std::int32_t>((*pair)[1].get<std::int64_t>()));
      }
      return;
    }
    fail(where + ".type = " + detail::quoted(type) +
         " is not supported (pith post-processes with TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, "
         "Sequence)");
  }

  void read_decoder(const nlohmann::json& object, const std::string& where) {
    const std::string type = type_of(object, where);
    if (type == "Sequence") {
      const nlohmann::json* list = member(object, "decoders");
      if (list == nullptr || !list->is_array()) fail(where + ".decoders is missing or not an array");
      for (std::size_t i = 0; i < list->size(); ++i) read_decoder((*list)[i], where + ".decoders[" + std::to_string(i) + "]");
    } else if (type == "ByteLevel") {
      decoder_.byte_level = true;
    } else if (type == "ByteFallback") {
      decoder_.byte_fallback = true;
    } else if (type == "Fuse") {
      // concatenation: what decode_all does
    } else if (type == "Replace") {
      const nlohmann::json* pattern = member(object, "pattern");
      const nlohmann::json* literal = pattern != nullptr ? member(*pattern, "String") : nullptr;
      if (literal == nullptr || !literal->is_string()) fail(where + ".pattern must be {\"String\": ...}");
      decoder_.replacements.emplace_back(literal->get<std::string>(), string_member(object, "content", where));
    } else if (type == "Strip") {
      const nlohmann::json* stop = member(object, "stop");
      if (stop != nullptr && !(stop->is_number_integer() && stop->get<std::int64_t>() == 0))
        fail(where + ".stop = " + detail::json_excerpt(*stop) + " is not supported (a token is decoded before the text ends)");
      const nlohmann::json* start = member(object, "start");
      decoder_.strip_start = string_member(object, "content", where);
      decoder_.strip_count = start != nullptr && start->is_number_integer() && start->get<std::int64_t>() > 0
                                 ? static_cast<std::size_t>(start->get<std::int64_t>()) : 0;
    } else if (type == "Metaspace") {
      const std::string replacement =
          member(object, "replacement") != nullptr ? string_member(object, "replacement", where) : "\xE2\x96\x81";
      decoder_.replacements.emplace_back(replacement, " ");
      const std::string scheme = member(object, "prepend_scheme") != nullptr ? string_member(object, "prepend_scheme", where)
                                 : bool_member(object, "add_prefix_space", true, where) ? "always" : "never";
      if (scheme != "never") {
        decoder_.strip_start = " ";
        decoder_.strip_count = 1;
      }
    } else {
      fail(where + ".type = " + detail::quoted(type) +
           " is not supported (pith decodes ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence)");
    }
  }

  // tokenizer_config.json: bos_token and eos_token, each a string or {"content": ...}.
  void read_config(const nlohmann::json& config) {
    const auto id_of = [&](const char* key) -> std::int32_t {
      const nlohmann::json* value = member(config, key);
      if (value != nullptr && value->is_object()) value = member(*value, "content");
      if (value == nullptr || !value->is_string()) return -1;
      const auto id = token_id(value->get<std::string>());
      if (!id) fail("tokenizer_config.json: " + std::string(key) + " = " + detail::json_excerpt(*value) + " is not a token");
      return *id;
    };
    bos_ = id_of("bos_token");
    eos_ = id_of("eos_token");
  }

  // ---- building -------------------------------------------------------------------------------

  void add_added_token(std::int32_t id, const std::string& text, bool special, bool lstrip, bool rstrip, bool normalized) {
    if (static_cast<std::size_t>(id) >= pieces_.size()) {
      pieces_.resize(static_cast<std::size_t>(id) + 1);
      kinds_.resize(pieces_.size(), kind::unused);
    }
    pieces_[static_cast<std::size_t>(id)] = text;
    kinds_[static_cast<std::size_t>(id)] = special ? kind::special : kind::added;
    added_.push_back({id, text, special, lstrip, rstrip, normalized});
    added_ids_.emplace(text, id);
    vocab_.insert_or_assign(text, id);
  }

  // Indexes built once everything is read: merge rules by ids, the added-token matchers, the byte
  // symbols, the cut rules.
  void finish() {
    merges_.build();
    if (!unknown_text_.empty()) {
      const auto found = vocab_.find(unknown_text_);
      if (!found) fail("model.unk_token = " + detail::quoted(unknown_text_) + " is not in the vocabulary");
      unk_ = *found;
    }
    byte_symbols_.fill(-1);
    byte_fallback_ids_.fill(-1);
    for (std::size_t c = 0; c < 0x80; ++c) ascii_ids_[c] = vocab_.find(std::string(1, static_cast<char>(c)));
    if (byte_level_) {
      const auto& table = bpe_detail::alphabet();
      for (std::size_t b = 0; b < 256; ++b)
        if (const auto found = vocab_.find(table.text[b])) byte_symbols_[b] = *found;
      // Whole words for ignore_merges, by their bytes.
      if (ignore_merges_) {
        raw_vocab_.reserve(vocab_.size());
        vocab_.for_each([&](std::string_view text, std::int32_t id) {
          if (const auto raw = bpe_detail::bytes_of_piece(text)) raw_vocab_.insert_or_assign(*raw, id);
        });
      }
    }
    if (byte_fallback_) {
      static constexpr char hex[] = "0123456789ABCDEF";
      for (std::size_t b = 0; b < 256; ++b) {
        const std::string piece = std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">";
        if (const auto found = vocab_.find(piece)) byte_fallback_ids_[b] = *found;
      }
    }

    for (std::size_t i = 0; i < added_.size(); ++i) {
      const added_token& token = added_[i];
      (token.normalized && !normalizers_.empty() ? added_normalized_ : added_raw_).add(token.text, static_cast<std::int32_t>(i));
      (token.normalized && !normalizers_.empty() ? added_normalized_plain_ : added_raw_plain_)
          .add(token.special ? std::string_view() : std::string_view(token.text), static_cast<std::int32_t>(i));
      std::size_t previous = 0, characters = 0;
      for (std::size_t at = 0; at < token.text.size(); ++characters) {
        const std::size_t length = std::max<std::size_t>(1, utf8_next(std::string_view(token.text).substr(at)).length);
        if (at > 0)
          added_pairs_.push_back(pair_key(std::string_view(token.text).substr(previous, at - previous),
                                          std::string_view(token.text).substr(at, length)));
        previous = at;
        at += length;
      }
      if (characters == 1 && !(token.normalized && !normalizers_.empty())) single_added_.push_back(token.text);
    }
    std::sort(added_pairs_.begin(), added_pairs_.end());
    std::sort(single_added_.begin(), single_added_.end());
    newline_cuts_ = newline_cuts_allowed_ && probe_newline_cuts();
  }

  // Whether every split of the pre-tokenizer ends a word at a line feed followed by a letter or a
  // number, on probes that cover the usual regexes' alternatives (a line feed after letters,
  // digits, punctuation and spaces, before Latin, accented, CJK letters and digits).
  bool probe_newline_cuts() const {
    bool any_split = false;
    for (const pre_step& step : pre_steps_) any_split = any_split || step.pattern != nullptr;
    if (!any_split) return false;
    for (const char* before : {"a", "1", "!", " ", "a \t", "\n", ".\r"}) {
      for (const char* after : {"b", "Z", "\xC3\xA9", "\xE6\x97\xA5", "7"}) {
        const std::string text = std::string(before) + "\n" + after + " x";
        scratch work;
        pre_tokenize(text, true, work);
        std::size_t offset = 0;
        bool cut = false;
        for (const std::string_view word : work.words) {
          offset = static_cast<std::size_t>(word.data() - text.data()) + word.size();
          if (word.data() < text.data() || word.data() >= text.data() + text.size()) return false;  // rewritten text
          cut = cut || offset == std::string(before).size() + 1;
        }
        if (!cut) return false;
      }
    }
    return true;
  }

  void check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size())
      PITH_THROW(argument_error, "bpe_tokenizer: token id " + std::to_string(id) + " is outside the vocabulary of " +
                                     std::to_string(vocab_size()));
  }

  static std::uint64_t pair_key(std::string_view left, std::string_view right) noexcept {
    return detail::token_pair_key(left, right);
  }

  // ---- encoding -------------------------------------------------------------------------------

  void encode_text(std::string_view input, bool first, bool parse_special, std::vector<std::int32_t>& out) const {
    if (input.empty()) return;
    const std::string repaired = utf8_is_valid(input) ? std::string() : utf8_repair(input);
    const std::string_view text = repaired.empty() ? input : std::string_view(repaired);
    scratch work;
    const added_token_matcher& raw = parse_special ? added_raw_ : added_raw_plain_;
    std::size_t position = 0;
    bool strip_next = false;  // the previous added token has rstrip
    while (position <= text.size()) {
      const auto found = raw.find(text, position);
      std::string_view section = text.substr(position, found.begin - position);
      if (strip_next) section = trim_start(section);
      if (found.id >= 0 && added_[found.index].lstrip) section = trim_end(section);
      encode_section(section, first && position == 0, parse_special, work, out);
      if (found.id < 0) break;
      out.push_back(added_[found.index].id);
      strip_next = added_[found.index].rstrip;
      position = found.end;
    }
  }

  // One stretch of text between raw added tokens: normalize, cut out normalized added tokens, pre-tokenize, merge.
  void encode_section(std::string_view section, bool first, bool parse_special, scratch& work,
                      std::vector<std::int32_t>& out) const {
    if (section.empty()) return;
    std::string normalized;
    std::string_view text = section;
    if (!normalizers_.empty()) {
      normalized = normalize(section);
      text = normalized;
      if (text.empty()) return;
    }
    const added_token_matcher& inner = parse_special ? added_normalized_ : added_normalized_plain_;
    std::size_t position = 0;
    bool strip_next = false;
    while (position <= text.size()) {
      const auto found = inner.find(text, position);
      std::string_view piece = text.substr(position, found.begin - position);
      if (strip_next) piece = trim_start(piece);
      if (found.id >= 0 && added_[found.index].lstrip) piece = trim_end(piece);
      if (!piece.empty()) {
        pre_tokenize(piece, first && position == 0, work);
        for (const std::string_view word : work.words) encode_word(word, work, out);
      }
      if (found.id < 0) break;
      out.push_back(added_[found.index].id);
      strip_next = added_[found.index].rstrip;
      position = found.end;
    }
  }

  std::string normalize(std::string_view text) const {
    std::string current(text);
    for (const normalizer_step& step : normalizers_) {
      switch (step.what) {
        case normalizer_step::type::normal_form:
          current = unicode::normalize(current, step.form);
          break;
        case normalizer_step::type::lowercase:
          current = unicode::lowercase(current);
          break;
        case normalizer_step::type::prepend:
          current = step.text + current;
          break;
        case normalizer_step::type::replace: {
          std::string replaced;
          replaced.reserve(current.size() + current.size() / 2);
          step.pattern->segments(current, [&](std::size_t begin, std::size_t end, bool matched) {
            if (matched)
              replaced += step.text;
            else
              replaced.append(current, begin, end - begin);
          });
          current = std::move(replaced);
          break;
        }
      }
    }
    return current;
  }

  // Whitespace (White_Space) at the ends of a text, for lstrip / rstrip.
  static bool is_space_at(std::string_view text) noexcept { return unicode::is_white_space(text); }
  static std::string_view trim_start(std::string_view text) noexcept {
    while (!text.empty() && is_space_at(text)) text.remove_prefix(utf8_next(text).length);
    return text;
  }
  static std::string_view trim_end(std::string_view text) noexcept {
    while (!text.empty()) {
      std::size_t start = text.size() - 1;
      while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xc0) == 0x80) --start;
      if (!is_space_at(text.substr(start))) break;
      text = text.substr(0, start);
    }
    return text;
  }

  // Cuts `text` into work.words with the pre-tokenizer steps in order.
  void pre_tokenize(std::string_view text, bool first, scratch& work) const {
    work.words.clear();
    work.words.push_back(text);
    for (const pre_step& step : pre_steps_) {
      work.next_words.clear();
      for (std::size_t w = 0; w < work.words.size(); ++w) {
        std::string_view word = work.words[w];
        if (step.what == pre_step::type::metaspace) {
          std::string rewritten;
          for (std::size_t i = 0; i < word.size(); ++i) {
            if (word[i] == ' ')
              rewritten += step.replacement;
            else
              rewritten += word[i];
          }
          const bool prepend = step.prepend_scheme == "always" || (step.prepend_scheme == "first" && first && w == 0);
          if (prepend && rewritten.compare(0, step.replacement.size(), step.replacement) != 0) rewritten.insert(0, step.replacement);
          work.owned.push_back(std::make_unique<std::string>(std::move(rewritten)));
          const std::string_view stored = *work.owned.back();
          if (!step.metaspace_split) {
            work.next_words.push_back(stored);
            continue;
          }
          // Each replacement character starts a word (merged with the text after it).
          std::size_t start = 0;
          for (std::size_t at = stored.find(step.replacement, 1); at != std::string_view::npos;
               at = stored.find(step.replacement, at + 1)) {
            work.next_words.push_back(stored.substr(start, at - start));
            start = at;
          }
          work.next_words.push_back(stored.substr(start));
          continue;
        }
        if (step.what == pre_step::type::byte_level && step.add_prefix_space && (word.empty() || word.front() != ' ')) {
          work.owned.push_back(std::make_unique<std::string>(" " + std::string(word)));
          word = *work.owned.back();
        }
        if (step.pattern == nullptr) {
          work.next_words.push_back(word);
          continue;
        }
        split_word(word, step, work.next_words);
      }
      std::swap(work.words, work.next_words);
    }
    std::erase_if(work.words, [](std::string_view w) { return w.empty(); });
  }

  // Hugging Face's split behaviours over the pattern's matches and the gaps between them.
  static void split_word(std::string_view word, const pre_step& step, std::vector<std::string_view>& out) {
    const split_behavior behavior = step.what == pre_step::type::byte_level ? split_behavior::isolated : step.behavior;
    const std::size_t start_size = out.size();
    bool previous_match = false;
    step.pattern->segments(word, [&](std::size_t begin, std::size_t end, bool matched) {
      if (step.invert) matched = !matched;
      const std::string_view piece = word.substr(begin, end - begin);
      switch (behavior) {
        case split_behavior::isolated:
          out.push_back(piece);
          break;
        case split_behavior::removed:
          if (!matched) out.push_back(piece);
          break;
        case split_behavior::contiguous:
          if (matched && previous_match && out.size() > start_size)
            out.back() = std::string_view(out.back().data(), out.back().size() + piece.size());
          else
            out.push_back(piece);
          break;
        case split_behavior::merged_with_previous:
          if (matched && !previous_match && out.size() > start_size)
            out.back() = std::string_view(out.back().data(), out.back().size() + piece.size());
          else
            out.push_back(piece);
          break;
        case split_behavior::merged_with_next:
          if (!matched && previous_match && out.size() > start_size)
            out.back() = std::string_view(out.back().data(), out.back().size() + piece.size());
          else
            out.push_back(piece);
          break;
      }
      previous_match = matched;
    });
  }

  void encode_word(std::string_view word, scratch& work, std::vector<std::int32_t>& out) const {
    const bool cached = word.size() <= word_cache::max_word_bytes;
    const std::size_t slot = cached ? std::hash<std::string_view>{}(word) & (word_cache::slots - 1) : 0;
    if (cached) {
      std::lock_guard lock(cache_->mutex);
      const auto& entry = cache_->entries[slot];
      if (entry.word == word && !entry.ids.empty()) {
        out.insert(out.end(), entry.ids.begin(), entry.ids.end());
        return;
      }
    }
    work.ids.clear();
    merge_word(word, work);
    out.insert(out.end(), work.ids.begin(), work.ids.end());
    if (cached) {
      std::lock_guard lock(cache_->mutex);
      auto& entry = cache_->entries[slot];
      entry.word.assign(word);
      entry.ids.assign(work.ids.begin(), work.ids.end());
    }
  }

  // Step 5 of the class comment for one word; the ids go to work.ids.
  void merge_word(std::string_view word, scratch& work) const {
    auto& symbols = work.symbols;
    symbols.clear();
    if (byte_level_) {
      if (ignore_merges_)
        if (const auto found = raw_vocab_.find(word)) {
          work.ids.push_back(*found);
          return;
        }
      for (const char c : word) symbols.push_back({byte_symbols_[static_cast<unsigned char>(c)], 0, 0, true});
    } else {
      if (ignore_merges_)
        if (const auto found = vocab_.find(word)) {
          work.ids.push_back(*found);
          return;
        }
      bool previous_unknown = false;
      for (std::size_t i = 0; i < word.size();) {
        const std::size_t length = std::max<std::size_t>(1, utf8_next(word.substr(i)).length);
        const std::string_view character = word.substr(i, length);
        i += length;
        const auto lead = static_cast<unsigned char>(character[0]);
        const auto found = lead < 0x80 ? ascii_ids_[lead] : vocab_.find(character);
        if (found) {
          symbols.push_back({*found, 0, 0, true});
          previous_unknown = false;
          continue;
        }
        bool all_bytes = byte_fallback_;
        for (const char c : character) all_bytes = all_bytes && byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0;
        if (all_bytes) {
          for (const char c : character) symbols.push_back({byte_fallback_ids_[static_cast<unsigned char>(c)], 0, 0, true});
          previous_unknown = false;
          continue;
        }
        if (!(fuse_unknown_ && previous_unknown)) symbols.push_back({unk_, 0, 0, true});
        previous_unknown = true;
      }
    }
    const auto count = static_cast<std::int32_t>(symbols.size());
    for (std::int32_t i = 0; i < count; ++i) {
      symbols[static_cast<std::size_t>(i)].prev = i - 1;
      symbols[static_cast<std::size_t>(i)].next = i + 1 < count ? i + 1 : -1;
    }
    // Min-heap on (rank, position): the lowest rank first, the leftmost among equal ranks.
    auto& heap = work.heap;
    heap.clear();
    const auto later = [](const scratch::candidate& a, const scratch::candidate& b) {
      return a.rank > b.rank || (a.rank == b.rank && a.position > b.position);
    };
    const auto push = [&](std::int32_t position) {
      const auto& left = symbols[static_cast<std::size_t>(position)];
      if (left.next < 0 || left.id < 0) return;
      const auto& right = symbols[static_cast<std::size_t>(left.next)];
      if (right.id < 0) return;
      if (const auto* rule = merges_.find(left.id, right.id)) {
        heap.push_back({rule->rank, position, rule->id, left.id, right.id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    };
    for (std::int32_t i = 0; i + 1 < count; ++i) push(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const scratch::candidate top = heap.back();
      heap.pop_back();
      auto& left = symbols[static_cast<std::size_t>(top.position)];
      if (!left.alive || left.next < 0) continue;
      auto& right = symbols[static_cast<std::size_t>(left.next)];
      // Stale: one side changed since the candidate was queued (merging always changes a token's id).
      if (left.id != top.left || right.id != top.right) continue;
      left.id = top.id;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.position;
      if (left.prev >= 0) push(left.prev);
      push(top.position);
    }
    for (std::int32_t i = count > 0 ? 0 : -1; i >= 0; i = symbols[static_cast<std::size_t>(i)].next)
      if (symbols[static_cast<std::size_t>(i)].id >= 0)
        work.ids.push_back(symbols[static_cast<std::size_t>(i)].id);
      else if (unk_ >= 0)
        work.ids.push_back(unk_);
  }

  std::string source_;
  std::vector<std::string> pieces_;  // id → vocabulary text or added token content ("" for unused ids)
  std::vector<kind> kinds_;
  bpe_detail::string_index vocab_;      // text → id (added tokens override, as in the reference)
  bpe_detail::string_index raw_vocab_;  // byte-level with ignore_merges: the bytes an entry stands for → id
  bpe_detail::string_map<std::int32_t> added_ids_;  // added token content → id
  bpe_detail::merge_table merges_;
  std::vector<added_token> added_;
  added_token_matcher added_raw_, added_normalized_;              // every added token, by where it is matched
  added_token_matcher added_raw_plain_, added_normalized_plain_;  // the same without the special ones
  std::vector<std::uint64_t> added_pairs_;   // sorted pair_key of adjacent characters in added tokens
  std::vector<std::string> single_added_;    // sorted added tokens of one character, matched on raw text
  std::vector<normalizer_step> normalizers_;
  std::vector<pre_step> pre_steps_;
  decoder_chain decoder_;
  std::array<std::int32_t, 256> byte_symbols_{};       // byte-level: byte → id of its character
  std::array<std::int32_t, 256> byte_fallback_ids_{};  // byte → id of "<0xHH>", -1 where absent
  std::array<std::optional<std::int32_t>, 0x80> ascii_ids_{};  // character-level: an ASCII character's id
  std::vector<std::int32_t> prefix_, suffix_;
  std::string unknown_text_;
  std::int32_t bos_ = -1, eos_ = -1, unk_ = -1;
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unknown_ = false;
  bool newline_cuts_allowed_ = true;
  bool newline_cuts_ = false;
  std::unique_ptr<word_cache> cache_;
};

/// A pith::tokenizer over a BPE tokenizer.
inline tokenizer make_tokenizer(bpe_tokenizer bpe) {
  return tokenizer(std::shared_ptr<const tokenizer_model>(std::make_shared<const bpe_tokenizer>(std::move(bpe))));
}

/// The tokenizer in `path`, whatever its kind: a tokenizer.json, a folder holding one, a GGUF file
/// (SentencePiece "llama" or byte-level "gpt2" vocabulary), a pith word/character vocabulary (.json
/// with "type": "pith-words"/"pith-chars"), or a llama2.c tokenizer.bin (which needs the model's
/// `vocab_size`; 0 refuses it). Errors name the file.
inline tokenizer load_tokenizer(const std::filesystem::path& path, std::int32_t vocab_size = 0) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored)) {
    if (std::filesystem::is_regular_file(path / "tokenizer.json", ignored)) return make_tokenizer(bpe_tokenizer::load_json(path / "tokenizer.json"));
    PITH_THROW(io_error, path.string() + ": the folder holds no tokenizer.json");
  }
  if (path.extension() == ".gguf") {
    const gguf_file file(path);
    if (file.has("tokenizer.ggml.model") && file.get_string("tokenizer.ggml.model") == "gpt2")
      return make_tokenizer(bpe_tokenizer::from_gguf(file));
    return tokenizer::from_gguf(file);
  }
  if (path.extension() == ".json") {
    // pith's own vocabularies say so in "type"; anything else is read as a Hugging Face tokenizer.
    const std::string text = read_regular_file(path);
    if (text.find("\"pith-words\"") != std::string::npos || text.find("\"pith-chars\"") != std::string::npos)
      if (text.size() < (1u << 20)) return tokenizer(word_tokenizer::parse(text, path.string()));
    std::string config;
    const auto config_path = path.parent_path() / "tokenizer_config.json";
    if (std::filesystem::is_regular_file(config_path, ignored)) config = read_regular_file(config_path);
    return make_tokenizer(bpe_tokenizer::parse_json(text, config, path.string()));
  }
  if (vocab_size <= 0)
    PITH_THROW(argument_error, path.string() + ": a llama2.c tokenizer.bin needs the model's vocab_size");
  return tokenizer::load_llama2c(path, vocab_size);
}

}  // namespace pith
