// SPDX-License-Identifier: MIT
// Shared helpers of the command-line examples: argument parsing, model and tokenizer lookup, timing.
#pragma once

#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include <pith/io/tokenizer_bpe.hpp>
#include <pith/pith.hpp>

namespace pith::examples {

/// Thrown for command-line mistakes; main prints the message and the usage and exits with 2.
struct usage_error : error {
  using error::error;
};

/// Minimal "--name value" parser over argv. An option given twice is a usage error (the second
/// value would otherwise be reported as an unknown option or silently win).
class arguments {
 public:
  arguments(int argc, char** argv) : args_(argv + 1, argv + argc) {}
  std::optional<std::string> take(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i) {
      if (args_[i] != name) continue;
      if (i + 1 >= args_.size()) throw usage_error("option " + std::string(name) + " needs a value");
      std::string value = args_[i + 1];
      args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i), args_.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      for (std::size_t j = i; j < args_.size(); ++j)
        if (args_[j] == name) throw usage_error("option " + std::string(name) + " is given twice");
      return value;
    }
    return std::nullopt;
  }
  bool flag(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (args_[i] == name) {
        args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i));
        for (std::size_t j = i; j < args_.size(); ++j)
          if (args_[j] == name) throw usage_error("option " + std::string(name) + " is given twice");
        return true;
      }
    return false;
  }
  std::vector<std::string> positional() {
    for (const auto& a : args_)
      if (a.size() > 1 && a[0] == '-' && a[1] == '-') throw usage_error("unknown option " + a);
    return args_;
  }

 private:
  std::vector<std::string> args_;
};

/// `text` as a T, read strictly: the whole text must be the number (no leading or trailing spaces,
/// no '+', no '-' for unsigned types, within T's range; floating-point values must be finite).
/// Errors name the option and say what was wrong.
template <class T>
T parse_number(const std::string& text, const char* option) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  const auto bad = [&](const std::string& why) {
    return usage_error(std::string(option) + ": '" + text + "' is not a valid number (" + why + ")");
  };
  if (text.empty()) throw bad("empty");
  if (std::isspace(static_cast<unsigned char>(text.front())) || std::isspace(static_cast<unsigned char>(text.back())))
    throw bad("spaces around it");
  if (text.front() == '+') throw bad("no '+' sign");
  if constexpr (std::is_unsigned_v<T>)
    if (text.front() == '-') throw bad("must not be negative");
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  if (status == std::errc::result_out_of_range) {
    if constexpr (std::is_integral_v<T>)
      throw bad("out of range " + std::to_string(std::numeric_limits<T>::min()) + ".." +
                std::to_string(std::numeric_limits<T>::max()));
    else
      throw bad("out of range");
  }
  if (status != std::errc() || stop != end) throw bad(stop == text.data() ? "not a number" : "trailing characters");
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(value)) throw bad("not finite");
  return value;
}

/// parse_number with an inclusive range [low, high]; the message states the range.
template <class T>
T parse_number(const std::string& text, const char* option, T low, T high) {
  const T value = parse_number<T>(text, option);
  if (value < low || value > high)
    throw usage_error(std::string(option) + ": " + text + " is out of range (" + std::to_string(low) + ".." +
                      std::to_string(high) + ")");
  return value;
}

/// Parses --threads (1..thread_pool::max_threads, or 0 for one thread per hardware thread) and
/// sizes the process-wide pool with it.
inline void set_threads_option(const std::string& text) {
  set_num_threads(parse_number<std::size_t>(text, "--threads", 0, thread_pool::max_threads));
}

/// Comma-separated token ids for --prompt-ids; each must be in [0, vocab_size).
/// --weights-type f32|f16|bf16: how load_model treats the matrices (absent: in place, in the file's type).
inline pith::load_options parse_weights_type(const std::optional<std::string>& text) {
  pith::load_options options;
  if (!text) return options;
  if (*text == "f32") options.convert_to = pith::dtype::f32;
  else if (*text == "f16") options.convert_to = pith::dtype::f16;
  else if (*text == "bf16") options.convert_to = pith::dtype::bf16;
  else throw usage_error("--weights-type must be f32, f16 or bf16, not '" + *text + "'");
  return options;
}

/// --quantize TYPE: quantizes the weight matrices at load (load_options::quantize_to): a type with a
/// reference quantizer (q8_0, q4_0, q4_k, ...) or llama-quantize's q4_k_m / q5_k_m mixture.
inline pith::load_options parse_quantize(const std::optional<std::string>& text, pith::load_options options = {}) {
  if (!text) return options;
  if (options.convert_to) throw usage_error("--quantize and --weights-type exclude each other");
  const auto quantization = pith::quantization_from_name(*text);
  if (!quantization)
    throw usage_error("--quantize: unknown type '" + *text + "' (valid: " + pith::quantization_names() + ")");
  options.quantize_to = *quantization;
  return options;
}

/// The storage types of the weight matrices, "Q4_K" or "Q4_K+Q6_K" (a mixture), in dtype order.
inline std::string matrix_types(const pith::model_weights& weights) {
  bool used[std::size(pith::all_dtypes)] = {};
  auto mark = [&](const pith::tensor_view& m) {
    if (!m.empty()) used[static_cast<std::size_t>(m.type())] = true;
  };
  mark(weights.token_embedding);
  mark(weights.lm_head_storage);
  for (const auto& l : weights.layers)
    for (const auto* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.mixer_gate, &l.mixer_up,
                          &l.mixer_down})
      mark(*m);
  std::string out;
  for (const pith::dtype t : pith::all_dtypes)
    if (used[static_cast<std::size_t>(t)]) out += (out.empty() ? "" : "+") + std::string(pith::dtype_name(t));
  return out;
}

inline std::vector<std::int32_t> parse_ids(const std::string& text, std::size_t vocab_size) {
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  const auto high = static_cast<std::int64_t>(std::min<std::size_t>(vocab_size, std::numeric_limits<std::int32_t>::max()) - 1);
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto id = parse_number<std::int64_t>(item, "--prompt-ids");
    if (id < 0 || id > high)
      throw usage_error("--prompt-ids: " + item + " is not a token id of this model (0.." + std::to_string(high) + ")");
    ids.push_back(static_cast<std::int32_t>(id));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

/// a + b, or a usage error naming `what` when the sum does not fit in size_t.
inline std::size_t checked_sum(std::size_t a, std::size_t b, const std::string& what) {
  if (b > std::numeric_limits<std::size_t>::max() - a) throw usage_error(what + " overflows");
  return a + b;
}

/// The tokenizer that goes with `model`: --tokenizer if given (a tokenizer.json or a folder holding
/// one, a llama2.c tokenizer.bin, a pith vocabulary .json or a .gguf), else the vocabulary embedded
/// in a GGUF, else tokenizer.json (a Hugging Face model's), vocab.json, tokenizer.bin or tok*.bin
/// beside the model. nullopt when none is found.
inline std::optional<tokenizer> find_tokenizer(const std::filesystem::path& model, const std::optional<std::string>& given,
                                               std::int32_t vocab_size) {
  // load_tokenizer tells a pith vocabulary from a tokenizer.json by its "type" and a SentencePiece
  // GGUF vocabulary from a byte-level BPE one by tokenizer.ggml.model.
  auto load = [&](const std::filesystem::path& path) -> tokenizer { return load_tokenizer(path, vocab_size); };
  if (given) return load(*given);
  if (model.extension() == ".gguf") {
    // A GGUF without a vocabulary has no tokenizer (--prompt-ids and printed ids still work).
    const gguf_file file(model);
    if (!file.has("tokenizer.ggml.model") && !file.has("tokenizer.ggml.tokens")) return std::nullopt;
    return load(model);
  }
  const auto folder = std::filesystem::is_directory(model) ? model : model.parent_path();
  for (const char* name : {"tokenizer.json", "vocab.json", "tokenizer.bin"})
    if (std::filesystem::exists(folder / name)) return load(folder / name);
  if (std::filesystem::is_directory(folder.empty() ? "." : folder))
    for (const auto& entry : std::filesystem::directory_iterator(folder.empty() ? "." : folder))
      if (entry.path().filename().string().rfind("tok", 0) == 0 && entry.path().extension() == ".bin")
        return load(entry.path());
  return std::nullopt;
}

/// main() of an example: runs `run`, prints usage errors with the usage text (exit 2) and other
/// errors with the program's name (exit 1); a standard output that could not be written is exit 1.
template <class Run>
int run_main(const char* program, const char* usage, Run&& run, int argc = 0, char** argv = nullptr) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::printf("%s", usage);
      return 0;
    }
  try {
    const int status = run();
    // Output that could not be written (a full disk, a closed pipe) means the job was not done.
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::fprintf(stderr, "\n%s: writing the standard output failed\n", program);
      return 1;
    }
    return status;
  } catch (const usage_error& e) {
    std::fprintf(stderr, "%s: %s\n%s", program, e.what(), usage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\n%s: %s\n", program, e.what());
    return 1;
  }
}

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace pith::examples

// ---- chat templates (io/chat_template.hpp) --------------------------------------------------------

#include <algorithm>
#include <fstream>
#include <iterator>

#include <pith/io/chat_template.hpp>

namespace pith::examples {

/// The tokens `tok` puts before a text: BOS for SentencePiece vocabularies that ask for it (GGUF
/// add_bos_token), llama2.c and word vocabularies; a tokenizer.json's post-processor's tokens.
inline std::vector<std::int32_t> tokens_before_text(const tokenizer& tok) {
  if (const spm_tokenizer* spm = tok.as_spm()) return spm->add_bos() ? std::vector<std::int32_t>{spm->bos_id()} : std::vector<std::int32_t>{};
  return tok.special_prefix();
}

/// The text of token `id` for messages: the stored piece, not its decoded form (control tokens decode to nothing).
inline std::string token_label(const tokenizer& tok, std::int32_t id) {
  if (id < 0 || id >= tok.vocab_size()) return "";
  return tok.token_text(id);
}

/// The chat template that goes with `model`: --chat-template FILE when given (a tokenizer_config.json,
/// a .gguf, or a file holding the Jinja text, rendered with the tokenizer's BOS/EOS pieces), else
/// the GGUF's tokenizer.chat_template, else tokenizer_config.json (or chat_template.jinja) beside
/// the model; nullopt when there is none. A template pith does not recognise is an error that
/// names `bypass`, the option that reads the text without a template.
inline std::optional<chat_template> find_chat_template(const std::filesystem::path& model,
                                                       const std::optional<std::string>& given, const tokenizer& tok,
                                                       const std::string& bypass) {
  const auto find = [&]() -> std::optional<chat_template> {
    if (given) {
      const std::filesystem::path path = *given;
      if (!std::filesystem::is_regular_file(path)) throw usage_error("--chat-template: " + *given + " is not a file");
      if (path.extension() == ".gguf") {
        auto found = chat_template::from_gguf(gguf_file(path));
        if (!found) throw usage_error("--chat-template: " + *given + " has no tokenizer.chat_template key");
        return found;
      }
      if (path.extension() == ".json") {
        auto found = chat_template::from_tokenizer_config(path);
        if (!found) throw usage_error("--chat-template: " + *given + " has no chat_template");
        return found;
      }
      std::ifstream in(path, std::ios::binary);
      const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      if (!in.good() && !in.eof()) throw io_error(*given + ": reading failed");
      return chat_template::recognise(text, path.string(), token_label(tok, tok.bos_id()), token_label(tok, tok.eos_id()));
    }
    if (model.extension() == ".gguf") return chat_template::from_gguf(gguf_file(model));
    const auto folder = std::filesystem::is_directory(model) ? model : model.parent_path();
    if (std::filesystem::exists(folder / "tokenizer_config.json"))
      return chat_template::from_tokenizer_config(folder / "tokenizer_config.json");
    if (std::filesystem::exists(folder / "chat_template.jinja")) {
      std::ifstream in(folder / "chat_template.jinja", std::ios::binary);
      const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      return chat_template::recognise(text, (folder / "chat_template.jinja").string(), token_label(tok, tok.bos_id()),
                                      token_label(tok, tok.eos_id()));
    }
    return std::nullopt;
  };
  try {
    return find();
  } catch (const format_error& e) {
    throw format_error(std::string(e.what()) + "; " + bypass + " reads the text without a chat template");
  }
}

/// A warning when the vocabulary lacks some of the template's special tokens (they are then read
/// as plain text, and generation stops only at the stop tokens it has); empty when it has them all.
inline std::string chat_vocabulary_warning(const tokenizer& tok, const chat_template& tmpl) {
  const auto found = chat_special_ids(tok, tmpl);
  std::string missing;
  for (const std::string& s : tmpl.special_strings()) {
    // Tokens some of the family's vocabularies lack (Llama 3.0 has no <|eom_id|>, Gemma's template
    // never writes <eos>, Qwen's <think> only matters with reasoning).
    if (s == "<|eom_id|>" || s == "<|endoftext|>" || s == "<think>" || s == "</think>" || s == "<eos>" ||
        s == "<|end_of_text|>")
      continue;
    if (std::none_of(found.begin(), found.end(), [&](const auto& f) { return f.first == s; }))
      missing += (missing.empty() ? "" : " ") + s;
  }
  if (missing.empty()) return {};
  return "the vocabulary has no token for " + missing + " of the " + tmpl.name() +
         " template: that text is tokenized as plain text";
}

/// "<|eot_id|> (128009), </s> (2)": stop tokens for messages.
inline std::string token_list(const tokenizer& tok, const std::vector<std::int32_t>& ids) {
  std::string out;
  for (const std::int32_t id : ids) out += (out.empty() ? "" : ", ") + token_label(tok, id) + " (" + std::to_string(id) + ")";
  return out;
}

}  // namespace pith::examples
