// SPDX-License-Identifier: MIT
// pith_bench_tokenizer: encoding speed of the BPE tokenizers (Llama 3, Qwen3, Gemma 3 tokenizer.json,
// GPT-2 GGUF) on one core, in MB of text per second, on a 10 MB text.
//
// Two texts: the test corpus (tests/data/tokenizers/corpus.jsonl: scripts, code, emoji, digits,
// whitespace, special-token text) repeated to 10 MB, where most words repeat and come from the word
// cache, and 10 MB of generated words that rarely repeat (letters drawn at random, lengths 1-12),
// where nearly every word is merged afresh. The tokenizer files come from ../shared/models; a
// benchmark whose file is absent reports so and is skipped.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <pith/io/tokenizer_bpe.hpp>

namespace {

constexpr std::size_t text_bytes = 10u << 20;

const std::string& corpus_text() {
  static const std::string text = [] {
    std::ifstream in(std::filesystem::path(PITH_TEST_DATA_DIR) / "tokenizers" / "corpus.jsonl");
    std::string joined;
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json value = nlohmann::json::parse(line);
      if (value.is_string()) joined += value.get<std::string>() + "\n";
    }
    std::string out;
    out.reserve(text_bytes + joined.size());
    while (!joined.empty() && out.size() < text_bytes) out += joined;
    return out;
  }();
  return text;
}

const std::string& random_words_text() {
  static const std::string text = [] {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> letter(0, 25), length(1, 12), separator(0, 19);
    std::string out;
    out.reserve(text_bytes + 16);
    while (out.size() < text_bytes) {
      for (int n = length(rng); n > 0; --n) out += static_cast<char>('a' + letter(rng));
      const int s = separator(rng);
      out += s == 0 ? ".\n" : s == 1 ? ", " : " ";
    }
    return out;
  }();
  return text;
}

// Each tokenizer is read once.
const pith::tokenizer* tokenizer_of(const std::string& relative) {
  static std::map<std::string, std::unique_ptr<pith::tokenizer>> loaded;
  auto& slot = loaded[relative];
  if (!slot) {
    const auto path = std::filesystem::path(PITH_SHARED_MODELS_DIR) / relative;
    if (!std::filesystem::exists(path)) return nullptr;
    slot = std::make_unique<pith::tokenizer>(pith::load_tokenizer(path));
  }
  return slot.get();
}

void encode(benchmark::State& state, const std::string& relative, const std::string& (*text)()) {
  const pith::tokenizer* tok = tokenizer_of(relative);
  if (tok == nullptr) {
    state.SkipWithError((relative + " not found under " PITH_SHARED_MODELS_DIR).c_str());
    return;
  }
  const std::string& input = text();
  std::size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tok->encode(input, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes_per_token"] = static_cast<double>(input.size()) / static_cast<double>(tokens == 0 ? 1 : tokens);
}

const char* const files[][2] = {{"llama3", "tokenizers/llama3/tokenizer.json"},
                                {"qwen3", "tokenizers/qwen3/tokenizer.json"},
                                {"gemma3", "tokenizers/gemma3/tokenizer.json"},
                                {"gpt2_gguf", "ggml-vocab/ggml-vocab-gpt-2.gguf"}};

const bool registered = [] {
  for (const auto& [name, relative] : files) {
    benchmark::RegisterBenchmark((std::string("BM_encode_corpus/") + name).c_str(),
                                 [relative = std::string(relative)](benchmark::State& s) { encode(s, relative, corpus_text); })
        ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("BM_encode_random_words/") + name).c_str(),
                                 [relative = std::string(relative)](benchmark::State& s) { encode(s, relative, random_words_text); })
        ->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
