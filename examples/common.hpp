// SPDX-License-Identifier: MIT
// Shared helpers of the command-line examples: argument parsing, model and tokenizer lookup, timing.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <pith/pith.hpp>

namespace pith::examples {

/// Thrown for command-line mistakes; main prints the message and the usage and exits with 2.
struct usage_error : error {
  using error::error;
};

/// Minimal "--name value" parser over argv.
class arguments {
 public:
  arguments(int argc, char** argv) : args_(argv + 1, argv + argc) {}
  std::optional<std::string> take(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i) {
      if (args_[i] != name) continue;
      if (i + 1 >= args_.size()) throw usage_error("option " + std::string(name) + " needs a value");
      std::string value = args_[i + 1];
      args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i), args_.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return value;
    }
    return std::nullopt;
  }
  bool flag(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (args_[i] == name) {
        args_.erase(args_.begin() + static_cast<std::ptrdiff_t>(i));
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

template <class T>
T parse_number(const std::string& text, const char* option) {
  try {
    std::size_t used = 0;
    T value;
    if constexpr (std::is_floating_point_v<T>)
      value = static_cast<T>(std::stod(text, &used));
    else if constexpr (std::is_signed_v<T>)
      value = static_cast<T>(std::stoll(text, &used));
    else {
      if (!text.empty() && text[0] == '-') throw std::invalid_argument("negative");
      value = static_cast<T>(std::stoull(text, &used));
    }
    if (used != text.size()) throw std::invalid_argument("trailing characters");
    return value;
  } catch (const std::logic_error&) {
    throw usage_error(std::string(option) + ": '" + text + "' is not a valid number");
  }
}

inline std::vector<std::int32_t> parse_ids(const std::string& text) {
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    ids.push_back(parse_number<std::int32_t>(item, "--prompt-ids"));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

/// The tokenizer that goes with `model`: --tokenizer if given (a llama2.c tokenizer.bin, a pith
/// vocabulary .json or a .gguf), else the vocabulary embedded in a GGUF, else tokenizer.bin,
/// tok*.bin or vocab.json beside the model. nullopt when none is found.
inline std::optional<tokenizer> find_tokenizer(const std::filesystem::path& model, const std::optional<std::string>& given,
                                               std::int32_t vocab_size) {
  auto load = [&](const std::filesystem::path& path) -> tokenizer {
    if (path.extension() == ".json") return tokenizer::load_words(path);
    if (path.extension() == ".gguf") return tokenizer::from_gguf(gguf_file(path));
    return tokenizer::load_llama2c(path, vocab_size);
  };
  if (given) return load(*given);
  if (model.extension() == ".gguf") return tokenizer::from_gguf(gguf_file(model));
  const auto folder = std::filesystem::is_directory(model) ? model : model.parent_path();
  for (const char* name : {"vocab.json", "tokenizer.bin"})
    if (std::filesystem::exists(folder / name)) return load(folder / name);
  if (std::filesystem::is_directory(folder.empty() ? "." : folder))
    for (const auto& entry : std::filesystem::directory_iterator(folder.empty() ? "." : folder))
      if (entry.path().filename().string().rfind("tok", 0) == 0 && entry.path().extension() == ".bin")
        return load(entry.path());
  return std::nullopt;
}

/// main() of an example: runs `run`, prints usage errors with the usage text (exit 2) and other
/// errors with the program's name (exit 1).
template <class Run>
int run_main(const char* program, const char* usage, Run&& run, int argc = 0, char** argv = nullptr) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::printf("%s", usage);
      return 0;
    }
  try {
    return run();
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
