// SPDX-License-Identifier: MIT
// chat_template: recognises a model's chat template (Llama 3, ChatML, Gemma, Mistral [INST]) from its
// Jinja text and renders messages the way the template does, without a Jinja engine.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/gguf.hpp"
#include "pith/io/tokenizer.hpp"

namespace pith {

/// The chat formats pith renders. Each is recognised by the markers its template writes.
enum class chat_family {
  llama3,   // <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>
  chatml,   // <|im_start|>role\n content <|im_end|>\n (Qwen2/2.5/3, SmolLM)
  gemma,    // <start_of_turn>role\n content <end_of_turn>\n, "model" for the assistant
  mistral,  // [INST] content [/INST] answer</s>
};

inline const char* chat_family_name(chat_family family) noexcept {
  switch (family) {
    case chat_family::llama3: return "Llama 3";
    case chat_family::chatml: return "ChatML";
    case chat_family::gemma: return "Gemma";
    case chat_family::mistral: return "Mistral [INST]";
  }
  return "?";
}

/// One message: role "system", "user" or "assistant" (other roles are refused) and its text.
struct chat_message {
  std::string role;
  std::string content;
};

struct chat_render_options {
  /// Append the turn header that asks the model for the assistant's answer.
  bool add_generation_prompt = true;
  /// Qwen3-style templates: false renders the empty reasoning block that turns thinking off; unset
  /// leaves the template's default (thinking on). Ignored by templates without the switch.
  std::optional<bool> enable_thinking;
  /// Llama 3.1+ templates: the "Today Date" of their system header; the templates' own default when
  /// no date is passed to them.
  std::string date_string = "26 Jul 2024";
};

namespace chat_detail {

// One code point of `text` at `at`: its value and its length (1 for a byte that does not start a
// valid sequence, which is then never whitespace).
inline std::pair<char32_t, std::size_t> code_point(std::string_view text, std::size_t at) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  const std::size_t length = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  if (length == 1 || at + length > text.size()) return {lead, 1};
  char32_t value = lead & (0x7f >> length);
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(at + i) & 0xc0) != 0x80) return {lead, 1};
    value = (value << 6) | (byte(at + i) & 0x3f);
  }
  return {value, length};
}

// The whitespace of the reference engine's `trim` filter (JavaScript's String.prototype.trim:
// WhiteSpace and LineTerminator code points). Python's str.strip(), which transformers' Jinja uses,
// differs only on U+001C..U+001F and U+0085 (stripped there) and U+FEFF (kept there).
inline bool is_trim_space(char32_t c) noexcept {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000 || c == 0xfeff;
}

// Bytes of leading whitespace in `text`.
inline std::size_t leading_space(std::string_view text) noexcept {
  std::size_t at = 0;
  while (at < text.size()) {
    const auto [c, length] = code_point(text, at);
    if (!is_trim_space(c)) break;
    at += length;
  }
  return at;
}

// Bytes of `text` before its trailing whitespace.
inline std::size_t before_trailing_space(std::string_view text) noexcept {
  std::size_t end = 0;
  for (std::size_t at = 0; at < text.size();) {
    const auto [c, length] = code_point(text, at);
    at += length;
    if (!is_trim_space(c)) end = at;
  }
  return end;
}

inline std::string trim(std::string_view text) {
  const std::size_t start = leading_space(text);
  text.remove_prefix(start);
  return std::string(text.substr(0, before_trailing_space(text)));
}

// Python's str.strip / lstrip / rstrip with the character '\n' only.
inline std::string_view lstrip_newlines(std::string_view text) noexcept {
  while (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return text;
}
inline std::string_view rstrip_newlines(std::string_view text) noexcept {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  return text;
}

inline bool contains(std::string_view text, std::string_view part) noexcept {
  return text.find(part) != std::string_view::npos;
}

// Undoes the escapes of a Jinja string literal that matter here (\n, \t, \\, \', \").
inline std::string unescape(std::string_view literal) {
  std::string out;
  for (std::size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] != '\\' || i + 1 == literal.size()) {
      out += literal[i];
      continue;
    }
    const char next = literal[++i];
    out += next == 'n' ? '\n' : next == 't' ? '\t' : next;
  }
  return out;
}

// The start of a template for error messages: one line, at most 60 characters.
inline std::string excerpt(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 60)) out += c == '\n' ? ' ' : c;
  return out + (text.size() > 60 ? "..." : "");
}

}  // namespace chat_detail

/// A recognised chat template: the family, the details of the template that change the text
/// (BOS, trimming, default system message, reasoning blocks, [INST] spacing) and the BOS/EOS
/// strings it is rendered with. render() reproduces the template's output for messages with
/// roles system/user/assistant (tool calls are not supported).
class chat_template {
 public:
  /// Recognises `text` (a Jinja chat template). `source` names where it came from (a file, a GGUF
  /// key) for messages; `bos_token` / `eos_token` are the strings the template is rendered with
  /// (tokenizer_config.json's bos_token/eos_token, or the GGUF vocabulary's BOS/EOS pieces; empty
  /// when the model has none). Throws format_error naming `source` when the template is not one
  /// of the families, or carries the markers of more than one.
  static chat_template recognise(std::string_view text, std::string source, std::string bos_token,
                                 std::string eos_token) {
    using chat_detail::contains;
    std::vector<chat_family> found;
    if (contains(text, "<|start_header_id|>") && contains(text, "<|end_header_id|>") && contains(text, "<|eot_id|>"))
      found.push_back(chat_family::llama3);
    if (contains(text, "<|im_start|>") && contains(text, "<|im_end|>")) found.push_back(chat_family::chatml);
    if (contains(text, "<start_of_turn>") && contains(text, "<end_of_turn>")) found.push_back(chat_family::gemma);
    // Llama 2's template also writes [INST] but wraps the system message in <<SYS>>, which no
    // Mistral template has: a different format, not recognised.
    if (contains(text, "[INST]") && contains(text, "[/INST]") && !contains(text, "<<SYS>>"))
      found.push_back(chat_family::mistral);
    if (found.empty())
      PITH_THROW(format_error, source + ": the chat template is not one pith recognises (Llama 3, ChatML, Gemma or "
                                        "Mistral [INST] markers not found); it starts \"" +
                                   chat_detail::excerpt(text) + "\"");
    if (found.size() > 1)
      PITH_THROW(format_error, source + ": the chat template carries the markers of both " +
                                   chat_family_name(found[0]) + " and " + chat_family_name(found[1]) +
                                   " templates; pith cannot tell which format it writes");

    chat_template t;
    t.family_ = found[0];
    t.source_ = std::move(source);
    t.bos_token_ = std::move(bos_token);
    t.eos_token_ = std::move(eos_token);
    // BOS: the template writes the bos_token variable (Llama 3, Gemma, Mistral), or the BOS text
    // itself as a literal.
    t.renders_bos_ = !t.bos_token_.empty() && (contains(text, "bos_token") || contains(text, t.bos_token_));
    if (t.family_ == chat_family::chatml) {
      // A ChatML template writes BOS only when it opens with it ({{ bos_token }}).
      const std::string_view start = text.substr(std::min(text.size(), chat_detail::leading_space(text)));
      t.renders_bos_ = !t.bos_token_.empty() &&
                       (start.starts_with("{{ bos_token }}") || start.starts_with("{{- bos_token }}") ||
                        start.starts_with("{{bos_token}}") || start.starts_with(t.bos_token_));
    }
    switch (t.family_) {
      case chat_family::llama3:
        // Llama 3.0's template appends the assistant header whatever add_generation_prompt says.
        t.always_prompts_ = !contains(text, "add_generation_prompt");
        t.knowledge_header_ = contains(text, "Cutting Knowledge Date");
        break;
      case chat_family::chatml:
        t.reasoning_ = contains(text, "</think>") && contains(text, "reasoning_content");
        t.thinking_switch_ = contains(text, "enable_thinking");
        t.default_system_ = default_chatml_system(text);
        break;
      case chat_family::gemma:
        t.system_refused_ = contains(text, "System role not supported");
        break;
      case chat_family::mistral:
        recognise_mistral_spacing(text, t);
        break;
    }
    return t;
  }

  /// The chat template of a Hugging Face tokenizer_config.json (key chat_template: a string, or a
  /// list of {name, template} of which "default" is used), else of chat_template.jinja beside it;
  /// nullopt when there is none. Errors as recognise(), and format_error for malformed JSON.
  static std::optional<chat_template> from_tokenizer_config(const std::filesystem::path& path) {
    const std::string source = path.string();
    const nlohmann::json config = detail::parse_json(read_file(path), source);
    if (!config.is_object()) PITH_THROW(format_error, source + ": not a JSON object");
    const auto token_text = [&](const char* key) -> std::string {
      const auto found = config.find(key);
      if (found == config.end() || found->is_null()) return {};
      if (found->is_string()) return found->get<std::string>();
      if (found->is_object() && found->contains("content") && (*found)["content"].is_string())
        return (*found)["content"].get<std::string>();
      PITH_THROW(format_error, source + ": " + key + " is neither a string nor an object with a \"content\" string");
    };
    const auto found = config.find("chat_template");
    std::string text;
    std::string where = source + " chat_template";
    if (found == config.end() || found->is_null()) {
      const auto beside = path.parent_path() / "chat_template.jinja";
      if (!std::filesystem::exists(beside)) return std::nullopt;
      text = read_file(beside);
      where = beside.string();
    } else if (found->is_string()) {
      text = found->get<std::string>();
    } else if (found->is_array()) {
      for (const auto& entry : *found)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
            entry["template"].is_string())
          text = entry["template"].get<std::string>();
      if (text.empty()) PITH_THROW(format_error, source + ": chat_template lists no \"default\" template");
    } else {
      PITH_THROW(format_error, source + ": chat_template is neither a string nor a list of named templates");
    }
    return recognise(text, where, token_text("bos_token"), token_text("eos_token"));
  }

  /// The template of a GGUF file's tokenizer.chat_template key, rendered with the vocabulary's BOS
  /// and EOS pieces; nullopt when the key is absent. Errors as recognise().
  static std::optional<chat_template> from_gguf(const gguf_file& file) {
    if (!file.has("tokenizer.chat_template")) return std::nullopt;
    std::string bos, eos;
    if (file.has("tokenizer.ggml.tokens")) {
      const auto& tokens = file.get_array<std::string>("tokenizer.ggml.tokens");
      const auto piece = [&](const char* key) -> std::string {
        if (!file.has(key)) return {};
        const std::int64_t id = file.get_integer(key);
        return id >= 0 && static_cast<std::size_t>(id) < tokens.size() ? tokens[static_cast<std::size_t>(id)] : "";
      };
      bos = piece("tokenizer.ggml.bos_token_id");
      eos = piece("tokenizer.ggml.eos_token_id");
    }
    return recognise(file.get_string("tokenizer.chat_template"), file.path() + " tokenizer.chat_template", bos, eos);
  }

  chat_family family() const noexcept { return family_; }
  const char* name() const noexcept { return chat_family_name(family_); }
  /// Where the template came from (file and key), as given to recognise().
  const std::string& source() const noexcept { return source_; }
  const std::string& bos_token() const noexcept { return bos_token_; }
  const std::string& eos_token() const noexcept { return eos_token_; }
  /// The rendered text starts with the BOS text: tokenize it without adding BOS again.
  bool renders_bos() const noexcept { return renders_bos_; }
  /// The template strips whitespace around each message's content (Llama 3, Gemma).
  bool trims_content() const noexcept { return family_ == chat_family::llama3 || family_ == chat_family::gemma; }
  /// The system message a ChatML template inserts when none is given (Qwen2.5); empty when none.
  const std::string& default_system() const noexcept { return default_system_; }

  /// The texts that end the assistant's turn, in order of preference: Llama 3 <|eot_id|> (and
  /// <|eom_id|>, <|end_of_text|>), ChatML <|im_end|> (and <|endoftext|>), Gemma <end_of_turn> (and
  /// <eos>), Mistral </s>; plus the template's EOS text when it is another.
  std::vector<std::string> stop_strings() const {
    std::vector<std::string> out;
    switch (family_) {
      case chat_family::llama3: out = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}; break;
      case chat_family::chatml: out = {"<|im_end|>", "<|endoftext|>"}; break;
      case chat_family::gemma: out = {"<end_of_turn>", "<eos>"}; break;
      case chat_family::mistral: out = {"</s>"}; break;
    }
    if (!eos_token_.empty() && std::find(out.begin(), out.end(), eos_token_) == out.end()) out.push_back(eos_token_);
    return out;
  }

  /// The marker texts of the family that are special tokens in its vocabularies (with BOS and EOS):
  /// where rendered text is cut before tokenizing (see encode_chat).
  std::vector<std::string> special_strings() const {
    std::vector<std::string> out;
    switch (family_) {
      case chat_family::llama3:
        out = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>",
               "<|end_of_text|>"};
        break;
      case chat_family::chatml: out = {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"}; break;
      case chat_family::gemma: out = {"<bos>", "<start_of_turn>", "<end_of_turn>", "<eos>"}; break;
      case chat_family::mistral: out = {"<s>", "[INST]", "[/INST]", "</s>"}; break;
    }
    for (const std::string* token : {&bos_token_, &eos_token_})
      if (!token->empty() && std::find(out.begin(), out.end(), *token) == out.end()) out.push_back(*token);
    return out;
  }

  /// The template's text for `messages`. Throws argument_error for a role other than system, user
  /// or assistant, and where the template itself raises (Gemma and Mistral: roles that do not
  /// alternate user/assistant after an optional system message).
  std::string render(std::span<const chat_message> messages, const chat_render_options& options = {}) const {
    for (const auto& m : messages)
      if (m.role != "system" && m.role != "user" && m.role != "assistant")
        PITH_THROW(argument_error, "chat template: the role \"" + m.role + "\" is not supported (system, user, assistant)");
    switch (family_) {
      case chat_family::llama3: return render_llama3(messages, options);
      case chat_family::chatml: return render_chatml(messages, options);
      case chat_family::gemma: return render_gemma(messages, options);
      case chat_family::mistral: return render_mistral(messages);
    }
    return {};
  }

  /// The text around one user turn's content: render({system?, user: X}) == before + X + after,
  /// for a content X the template does not change (a trimming template trims X itself: see
  /// trims_content). This is how a document longer than memory is wrapped: `before`, then the
  /// document as it is read, then `after`.
  struct turn_frame {
    std::string before, after;
  };
  turn_frame user_turn(const std::optional<std::string>& system, const chat_render_options& options = {}) const {
    // A content that no template changes and that cannot occur in the rest of the text.
    static constexpr std::string_view mark = "\x01pith-content\x01";
    std::vector<chat_message> messages;
    if (system) messages.push_back({"system", *system});
    messages.push_back({"user", std::string(mark)});
    const std::string text = render(messages, options);
    const std::size_t at = text.find(mark);
    if (at == std::string::npos || text.find(mark, at + 1) != std::string::npos)
      PITH_THROW(argument_error, source_ + ": the chat template does not write the user's message once");
    return {text.substr(0, at), text.substr(at + mark.size())};
  }

 private:
  chat_template() = default;

  static std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) PITH_THROW(io_error, path.string() + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) PITH_THROW(io_error, path.string() + ": reading failed");
    return text.str();
  }

  // The default system message of a ChatML template: the literal that follows "<|im_start|>system\n"
  // up to "<|im_end|>" inside one string literal (Qwen2.5: "You are Qwen, created by Alibaba
  // Cloud. You are a helpful assistant."). Templates that only write messages[0] have none.
  static std::string default_chatml_system(std::string_view text) {
    for (const std::string_view head : {std::string_view("<|im_start|>system\\n"), std::string_view("<|im_start|>system\n")}) {
      for (std::size_t at = text.find(head); at != std::string_view::npos; at = text.find(head, at + 1)) {
        const std::size_t start = at + head.size();
        const std::size_t end = text.find("<|im_end|>", start);
        if (end == std::string_view::npos) continue;
        const std::string_view literal = text.substr(start, end - start);
        // Only text inside the same string literal: no quote, no Jinja delimiters, no concatenation.
        if (literal.empty() || literal.find_first_of("'\"{}") != std::string_view::npos) continue;
        return chat_detail::unescape(literal);
      }
    }
    return {};
  }

  // Mistral's templates differ in the spaces around the markers (from the literals of the
  // template): v0.3 "[INST] " + content + "[/INST]", answer " " + trimmed + EOS, the system message
  // in the last user turn; v0.1/v0.2 " [INST] " + content + " [/INST]", the system message in the
  // first user turn; Nemo/Ministral (Tekken) "[INST]" + content + "[/INST]", answer + EOS untrimmed.
  static void recognise_mistral_spacing(std::string_view text, chat_template& t) {
    using chat_detail::contains;
    const bool space_before_close = contains(text, " [/INST]");
    const bool space_after_open = contains(text, "[INST] ");
    if (space_before_close) {
      t.inst_open_ = contains(text, " [INST] ") ? " [INST] " : "[INST] ";
      t.inst_close_ = " [/INST]";
      t.system_in_last_turn_ = false;
      t.answer_space_ = contains(text, "' ' + message") || contains(text, "\" \" + message");
      t.answer_trimmed_ = contains(text, "|trim + eos_token") || contains(text, "| trim + eos_token");
    } else {
      t.inst_open_ = space_after_open ? "[INST] " : "[INST]";
      t.inst_close_ = "[/INST]";
      t.system_in_last_turn_ = contains(text, "loop.last and system_message") || !contains(text, "loop.first");
      t.answer_space_ = space_after_open;
      t.answer_trimmed_ = contains(text, "|trim + eos_token") || contains(text, "| trim + eos_token");
    }
  }

  std::string header(std::string_view role) const {
    return "<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n";
  }

  std::string render_llama3(std::span<const chat_message> messages, const chat_render_options& options) const {
    using chat_detail::trim;
    std::string out;
    if (knowledge_header_) {
      // Llama 3.1/3.2: a system header always, with the knowledge cutoff and the date.
      out += bos();
      std::string system;
      std::size_t first = 0;
      if (!messages.empty() && messages[0].role == "system") {
        system = trim(messages[0].content);
        first = 1;
      }
      out += header("system") + "Cutting Knowledge Date: December 2023\nToday Date: " + options.date_string +
             "\n\n" + system + "<|eot_id|>";
      for (std::size_t i = first; i < messages.size(); ++i)
        out += header(messages[i].role) + trim(messages[i].content) + "<|eot_id|>";
    } else {
      // Llama 3.0: BOS before the first message.
      for (std::size_t i = 0; i < messages.size(); ++i)
        out += (i == 0 ? bos() : "") + header(messages[i].role) + trim(messages[i].content) + "<|eot_id|>";
    }
    if (options.add_generation_prompt || always_prompts_) out += header("assistant");
    return out;
  }

  std::string render_chatml(std::span<const chat_message> messages, const chat_render_options& options) const {
    std::string out = bos();
    const std::size_t count = messages.size();
    if (count > 0 && messages[0].role == "system")
      out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
    else if (!default_system_.empty())
      out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
    // Qwen3: answers after the last user query keep their reasoning block; earlier ones lose it.
    std::size_t last_query = count == 0 ? 0 : count - 1;
    for (std::size_t k = count; k-- > 0;) {
      const std::string_view content = messages[k].content;
      const bool tool_response = content.starts_with("<tool_response>") && content.ends_with("</tool_response>");
      if (messages[k].role == "user" && !tool_response) {
        last_query = k;
        break;
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      const chat_message& m = messages[i];
      if (m.role == "user" || (m.role == "system" && i > 0)) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      } else if (m.role == "assistant") {
        if (!reasoning_) {
          out += "<|im_start|>assistant\n" + m.content + "<|im_end|>\n";
          continue;
        }
        std::string_view content = m.content;
        std::string_view reasoning;
        const std::size_t close = content.find("</think>");
        if (close != std::string_view::npos) {
          // content.split('</think>')[-1].lstrip('\n') and
          // content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
          const std::size_t last_close = content.rfind("</think>");
          std::string_view head = chat_detail::rstrip_newlines(content.substr(0, close));
          const std::size_t open = head.rfind("<think>");
          if (open != std::string_view::npos) head = head.substr(open + 7);
          reasoning = chat_detail::lstrip_newlines(head);
          content = chat_detail::lstrip_newlines(content.substr(last_close + 8));
        }
        if (i > last_query && (i + 1 == count || !reasoning.empty())) {
          const std::string_view inner = chat_detail::lstrip_newlines(chat_detail::rstrip_newlines(reasoning));
          out += "<|im_start|>assistant\n<think>\n" + std::string(inner) + "\n</think>\n\n" +
                 std::string(chat_detail::lstrip_newlines(content));
        } else {
          out += "<|im_start|>assistant\n" + std::string(content);
        }
        out += "<|im_end|>\n";
      }
    }
    if (options.add_generation_prompt) {
      out += "<|im_start|>assistant\n";
      if (thinking_switch_ && options.enable_thinking == false) out += "<think>\n\n</think>\n\n";
    }
    return out;
  }

  std::string render_gemma(std::span<const chat_message> messages, const chat_render_options& options) const {
    std::string out = bos();
    std::string first_prefix;
    std::size_t first = 0;
    if (!messages.empty() && messages[0].role == "system") {
      if (system_refused_) PITH_THROW(argument_error, source_ + ": the chat template refuses a system message");
      // Gemma has no system turn: the system text opens the first user turn.
      first_prefix = messages[0].content + "\n\n";
      first = 1;
    }
    for (std::size_t i = first; i < messages.size(); ++i) {
      const chat_message& m = messages[i];
      const std::size_t index = i - first;
      if ((m.role == "user") != (index % 2 == 0))
        PITH_THROW(argument_error, source_ + ": Conversation roles must alternate user/assistant/user/assistant/...");
      const std::string role = m.role == "assistant" ? "model" : m.role;
      out += "<start_of_turn>" + role + "\n" + (index == 0 ? first_prefix : "") + chat_detail::trim(m.content) +
             "<end_of_turn>\n";
    }
    if (options.add_generation_prompt) out += "<start_of_turn>model\n";
    return out;
  }

  std::string render_mistral(std::span<const chat_message> messages) const {
    std::optional<std::string> system;
    std::size_t first = 0;
    if (!messages.empty() && messages[0].role == "system") {
      system = messages[0].content;
      first = 1;
    }
    for (std::size_t i = first; i < messages.size(); ++i)
      if ((messages[i].role == "user") != ((i - first) % 2 == 0))
        PITH_THROW(argument_error, source_ + ": After the optional system message, conversation roles must alternate "
                                             "user/assistant/user/assistant/...");
    std::string out = bos();
    for (std::size_t i = first; i < messages.size(); ++i) {
      const chat_message& m = messages[i];
      if (m.role == "user") {
        const bool with_system = system && (system_in_last_turn_ ? i + 1 == messages.size() : i == first);
        out += inst_open_ + (with_system ? *system + "\n\n" : std::string()) + m.content + inst_close_;
      } else if (m.role == "assistant") {
        out += (answer_space_ ? " " : "") + (answer_trimmed_ ? chat_detail::trim(m.content) : m.content) + eos_token_;
      } else {
        PITH_THROW(argument_error, source_ + ": Only user and assistant roles are supported, with the exception of an "
                                             "initial optional system message!");
      }
    }
    return out;
  }

  std::string bos() const { return renders_bos_ ? bos_token_ : std::string(); }

  chat_family family_ = chat_family::chatml;
  std::string source_;
  std::string bos_token_, eos_token_;
  bool renders_bos_ = false;
  bool always_prompts_ = false;      // Llama 3.0
  bool knowledge_header_ = false;    // Llama 3.1+
  bool reasoning_ = false;           // Qwen3 <think> blocks in answers
  bool thinking_switch_ = false;     // Qwen3 enable_thinking
  std::string default_system_;       // Qwen2.5
  bool system_refused_ = false;      // Gemma 2
  std::string inst_open_ = "[INST] ", inst_close_ = "[/INST]";
  bool system_in_last_turn_ = true, answer_space_ = true, answer_trimmed_ = true;
};

// ---- tokens ---------------------------------------------------------------------------------------

/// The template's special strings that the vocabulary names as a whole (its special and added
/// tokens: <|eot_id|>, <start_of_turn>, [INST], <s>, ...), with their ids.
inline std::vector<std::pair<std::string, std::int32_t>> chat_special_ids(const tokenizer& tok, const chat_template& tmpl) {
  std::vector<std::string> named;
  for (const special_token& t : tok.special_tokens()) named.push_back(t.text);
  std::sort(named.begin(), named.end());
  std::vector<std::pair<std::string, std::int32_t>> out;
  for (const std::string& s : tmpl.special_strings())
    if (const auto id = tok.token_id(s); id && std::binary_search(named.begin(), named.end(), s)) out.emplace_back(s, *id);
  return out;
}

/// The tokens of rendered chat text: the template's special strings that are tokens of the
/// vocabulary become their ids wherever they are (as Hugging Face's added-token matching and
/// llama.cpp's special-token parsing do, leftmost and longest first), and the text between them is
/// encoded without BOS. For vocabularies that parse special tokens themselves this is
/// tok.encode(text, false); it also gives word and llama2.c vocabularies their <s> and </s>.
inline std::vector<std::int32_t> encode_chat(const tokenizer& tok, const chat_template& tmpl, std::string_view text) {
  const auto specials = chat_special_ids(tok, tmpl);
  std::vector<std::int32_t> out;
  std::size_t plain = 0;  // start of the text not yet encoded
  const auto encode_plain = [&](std::size_t end) {
    if (end <= plain) return;
    const auto part = tok.encode(text.substr(plain, end - plain), false);
    out.insert(out.end(), part.begin(), part.end());
  };
  for (std::size_t at = 0; at < text.size();) {
    const std::pair<std::string, std::int32_t>* match = nullptr;
    for (const auto& special : specials)
      if (text.compare(at, special.first.size(), special.first) == 0 &&
          (!match || special.first.size() > match->first.size()))
        match = &special;
    if (!match) {
      ++at;
      continue;
    }
    encode_plain(at);
    out.push_back(match->second);
    at += match->first.size();
    plain = at;
  }
  encode_plain(text.size());
  return out;
}

/// The ids generation stops at: the family's stop strings that are tokens of the vocabulary, then
/// the tokenizer's EOS. Without a template's stop token in the vocabulary only EOS stops.
inline std::vector<std::int32_t> chat_stop_tokens(const tokenizer& tok, const chat_template& tmpl) {
  std::vector<std::int32_t> out;
  const auto specials = chat_special_ids(tok, tmpl);
  for (const std::string& s : tmpl.stop_strings())
    for (const auto& [text, id] : specials)
      if (text == s && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  if (tok.eos_id() >= 0 && std::find(out.begin(), out.end(), tok.eos_id()) == out.end()) out.push_back(tok.eos_id());
  return out;
}

}  // namespace pith
