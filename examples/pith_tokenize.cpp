// SPDX-License-Identifier: MIT
// pith-tokenize: token ids of a text (as one JSON array) with any tokenizer pith reads, and text of ids with --decode.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/io/llama2c.hpp>
#include <pith/io/tokenizer_bpe.hpp>
#include <pith/io/tokenizer_utf8.hpp>

#include "common.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-tokenize MODEL_OR_TOKENIZER [--text T | --file F | --jsonl F] [--no-special] [--decode]\n"
    "                     [--vocab-size N]\n"
    "  MODEL_OR_TOKENIZER  a tokenizer.json, a folder holding one, a .gguf file (its vocabulary), a pith\n"
    "                      vocabulary .json, a llama2.c tokenizer.bin (with --vocab-size) or a model whose\n"
    "                      tokenizer lies beside it (as pith-generate finds it)\n"
    "  --text T            the text to tokenize (default: the standard input)\n"
    "  --file F            the text is the whole file F\n"
    "  --jsonl F           each line of F is a JSON string; one JSON array of ids is printed per line\n"
    "  --no-special        no special tokens around the text (BOS ...); by default they are added as the\n"
    "                      tokenizer's post-processor says. With --decode: special tokens are left out\n"
    "  --decode            the input holds token ids (a JSON array, or ids separated by commas or spaces;\n"
    "                      with --jsonl one JSON array per line) and the text is printed (with --jsonl as\n"
    "                      JSON strings); special tokens are written as their text unless --no-special\n"
    "  --vocab-size N      the vocabulary size of a llama2.c tokenizer.bin (the file does not store it)\n"
    "Prints the ids as one JSON array on the standard output. Text with ill-formed UTF-8 is read with\n"
    "each ill-formed sequence as U+FFFD.\n";

using pith::examples::usage_error;

pith::tokenizer open_tokenizer(const std::filesystem::path& path, std::int32_t vocab_size) {
  std::error_code ignored;
  if (!std::filesystem::exists(path, ignored)) throw usage_error(path.string() + ": no such file or folder");
  if (std::filesystem::is_directory(path, ignored)) {
    if (std::filesystem::is_regular_file(path / "tokenizer.json", ignored)) return pith::load_tokenizer(path);
  } else if (path.extension() == ".json" || path.extension() == ".gguf" || vocab_size > 0) {
    return pith::load_tokenizer(path, vocab_size);
  } else if (path.extension() == ".bin") {
    // A llama2.c checkpoint: its header gives the vocabulary size of the tokenizer beside it.
    vocab_size = pith::llama2c_checkpoint(path).config().vocab_size;
  }
  auto found = pith::examples::find_tokenizer(path, std::nullopt, vocab_size);
  if (!found) throw usage_error(path.string() + ": no tokenizer found (a tokenizer.json, .gguf, vocab.json or tokenizer.bin)");
  return std::move(*found);
}

std::string read_input(const std::optional<std::string>& text, const std::optional<std::string>& file) {
  if (text) return *text;
  if (file) return pith::read_regular_file(*file);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::string ids_json(const std::vector<std::int32_t>& ids) {
  std::string out = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "]";
}

// Ids given as a JSON array or separated by commas and whitespace.
std::vector<std::int32_t> parse_id_list(const std::string& text, const pith::tokenizer& tok, const std::string& where) {
  std::string list = text;
  const std::size_t open = list.find_first_not_of(" \t\r\n");
  if (open != std::string::npos && list[open] == '[') {
    const std::size_t close = list.find_last_of(']');
    if (close == std::string::npos || close < open) throw usage_error(where + ": the JSON array of ids is not closed");
    list = list.substr(open + 1, close - open - 1);
  }
  for (char& c : list)
    if (c == ',' || c == '\t' || c == '\r' || c == '\n') c = ' ';
  std::vector<std::int32_t> ids;
  std::istringstream items(list);
  for (std::string item; items >> item;) {
    const auto id = pith::examples::parse_number<std::int64_t>(item, "--decode");
    if (id < 0 || id >= tok.vocab_size())
      throw usage_error(where + ": " + item + " is not a token id of this tokenizer (0.." + std::to_string(tok.vocab_size() - 1) + ")");
    ids.push_back(static_cast<std::int32_t>(id));
  }
  return ids;
}

// The text of `ids`: special tokens as their text unless `no_special`, ill-formed UTF-8 as U+FFFD.
std::string decode_ids(const pith::tokenizer& tok, const std::vector<std::int32_t>& ids, bool no_special) {
  std::vector<bool> special(static_cast<std::size_t>(tok.vocab_size()), false);
  for (const auto& token : tok.special_tokens())
    if (token.special && token.id >= 0 && token.id < tok.vocab_size()) special[static_cast<std::size_t>(token.id)] = true;
  std::string text;
  std::int32_t previous = -1;
  for (const std::int32_t id : ids) {
    if (special[static_cast<std::size_t>(id)])
      text += no_special ? std::string() : tok.token_text(id);
    else
      text += tok.decode(previous, id);
    previous = id;
  }
  return pith::utf8_repair(text);
}

int run(int argc, char** argv) {
  pith::examples::arguments args(argc, argv);
  const auto text = args.take("--text");
  const auto file = args.take("--file");
  const auto jsonl = args.take("--jsonl");
  const auto vocab_text = args.take("--vocab-size");
  const bool no_special = args.flag("--no-special");
  const bool decode = args.flag("--decode");
  const auto positional = args.positional();
  if (positional.size() != 1) throw usage_error("give one MODEL_OR_TOKENIZER");
  if ((text ? 1 : 0) + (file ? 1 : 0) + (jsonl ? 1 : 0) > 1) throw usage_error("--text, --file and --jsonl exclude each other");
  const std::int32_t vocab_size =
      vocab_text ? pith::examples::parse_number<std::int32_t>(*vocab_text, "--vocab-size", 1, std::numeric_limits<std::int32_t>::max()) : 0;
  const pith::tokenizer tok = open_tokenizer(positional[0], vocab_size);

  if (!jsonl) {
    const std::string input = read_input(text, file);
    if (decode) {
      const std::string out = decode_ids(tok, parse_id_list(input, tok, text ? "--text" : file ? *file : "stdin"), no_special);
      std::fwrite(out.data(), 1, out.size(), stdout);
    } else {
      std::printf("%s\n", ids_json(tok.encode(input, !no_special)).c_str());
    }
    return 0;
  }
  std::istringstream lines(pith::read_regular_file(*jsonl));
  std::size_t number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    const std::string where = *jsonl + ":" + std::to_string(number);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json value;
    if (const std::string reason = pith::detail::try_parse_json(line, value); !reason.empty())
      throw pith::format_error(where + ": not valid JSON: " + reason);
    if (decode) {
      if (!value.is_array()) throw pith::format_error(where + ": expected a JSON array of token ids");
      const std::string out = decode_ids(tok, parse_id_list(line, tok, where), no_special);
      std::printf("%s\n", nlohmann::json(out).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      if (!value.is_string()) throw pith::format_error(where + ": expected a JSON string");
      std::printf("%s\n", ids_json(tok.encode(value.get<std::string>(), !no_special)).c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-tokenize", usage, [&] { return run(argc, argv); }, argc, argv);
}
