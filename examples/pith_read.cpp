// SPDX-License-Identifier: MIT
// pith-read: reads a long document in chunks with a KV-cache eviction policy and a fixed budget,
// then answers an instruction. Progress, speed, cache size and peak memory go to stderr.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <pith/core/memory.hpp>
#include <pith/runtime/reader.hpp>

#include "common.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-read MODEL [--tokenizer FILE] --document FILE --instruction TEXT [--policy NAME] [--budget K]\n"
    "                 [--chunk L] [--positions reindexed|original] [--steps N] [--threads N] [--expect TEXT]\n"
    "                 [--citrus-pool K]\n"
    "  --policy   full, streaming, h2o, tova, snapkv, roco, citrus-cse, citrus-shared (default), citrus-separate\n"
    "  --budget   k, the states kept besides the newest chunk (default 768)\n"
    "  --chunk    L, tokens read per step (default 256)\n"
    "  --steps    answer tokens at most (default 64)\n"
    "  --citrus-pool  CItruS scores averaged over K neighbouring slots before the top-k (default 1: off)\n"
    "  --expect   the expected answer: printed after the answer with whether the answer starts with it\n"
    "             (exit status 0 either way)\n";

// Redraws at most every 100 ms (and always at the end): a chunk can take well under a millisecond.
void progress_bar(std::size_t done, std::size_t total, double seconds) {
  static double last_drawn = -1.0;
  if (done < total && last_drawn >= 0.0 && seconds - last_drawn < 0.1) return;
  last_drawn = seconds;
  constexpr int width = 30;
  const double fraction = total ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  const int filled = static_cast<int>(fraction * width);
  std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %zu/%zu tokens, %.0f tok/s", filled, "##############################",
               width - filled, "", 100.0 * fraction, done, total, seconds > 0 ? static_cast<double>(done) / seconds : 0.0);
  std::fflush(stderr);
}

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  const auto tokenizer_path = args.take("--tokenizer");
  const auto document_path = args.take("--document");
  const auto instruction_text = args.take("--instruction");
  reader_options options;
  options.policy = parse_policy(args.take("--policy").value_or("citrus-shared"));
  options.budget = parse_number<std::size_t>(args.take("--budget").value_or("768"), "--budget");
  options.chunk_size = parse_number<std::size_t>(args.take("--chunk").value_or("256"), "--chunk");
  const auto positions = args.take("--positions").value_or("reindexed");
  if (positions == "original") options.positions = position_mode::original;
  else if (positions != "reindexed") throw usage_error("--positions must be reindexed or original");
  const auto steps = parse_number<std::size_t>(args.take("--steps").value_or("64"), "--steps");
  options.max_answer_tokens = steps;
  const auto threads = args.take("--threads");
  const auto expect = args.take("--expect");
  options.citrus_pool = parse_number<std::size_t>(args.take("--citrus-pool").value_or("1"), "--citrus-pool");
  const auto rest = args.positional();
  if (rest.size() != 1) throw usage_error(rest.empty() ? "MODEL is missing" : "more than one MODEL given");
  if (!document_path) throw usage_error("--document is required");
  if (!instruction_text) throw usage_error("--instruction is required");
  if (threads) set_num_threads(parse_number<std::size_t>(*threads, "--threads"));

  const std::filesystem::path model_path = rest[0];
  const auto weights = load_model(model_path);
  const auto tok = find_tokenizer(model_path, tokenizer_path, static_cast<std::int32_t>(weights.config.vocab_size));
  if (!tok) throw usage_error("no tokenizer found beside the model; give --tokenizer");
  std::ifstream in(*document_path);
  if (!in) throw io_error(*document_path + ": cannot open the document");
  std::stringstream text;
  text << in.rdbuf();
  const auto document = tok->encode(text.str(), true);
  if (document.size() <= 1 && text.str().empty()) throw argument_error(*document_path + ": the document is empty");
  const auto instruction = tok->encode(*instruction_text, false);
  if (options.policy == policy_kind::full) options.max_context = document.size() + instruction.size() + steps + 1;

  reader r(weights, options, instruction);
  const auto start = std::chrono::steady_clock::now();
  r.feed(document, [&](std::size_t done) { progress_bar(done, document.size(), seconds_since(start)); });
  sampler greedy;
  std::string answer;
  std::int32_t previous = instruction.empty() ? document.back() : instruction.back();
  const auto tokens = r.answer(steps, greedy, [&](std::int32_t token) {
    if (token == weights.config.eos_token_id) return;
    const std::string piece = tok->decode(previous, token);
    previous = token;
    answer += piece;
  }, weights.config.eos_token_id);
  const double seconds = seconds_since(start);
  progress_bar(document.size(), document.size(), r.stats().reading_seconds);
  std::fprintf(stderr, "\n");
  std::printf("answer:%s%s\n", answer.empty() || answer[0] == ' ' ? "" : " ", answer.c_str());
  if (expect) {
    const auto expected = tok->encode(*expect, false);
    const bool correct = !expected.empty() && tokens.size() >= expected.size() &&
                         std::equal(expected.begin(), expected.end(), tokens.begin());
    std::printf("expected: %s (%s)\n", expect->c_str(), correct ? "correct" : "wrong");
  }
  std::fflush(stdout);
  const auto& stats = r.stats();
  std::fprintf(stderr, "read %zu tokens in %zu chunks in %.2f s: %.1f tok/s (eviction %.3f s, instruction passes %.3f s)\n",
               stats.tokens_read, stats.chunks, stats.reading_seconds,
               static_cast<double>(stats.tokens_read) / stats.reading_seconds, stats.eviction_seconds,
               stats.instruction_seconds);
  std::fprintf(stderr, "policy %s, budget %zu, chunk %zu: cache %zu states per layer, session state %.1f MiB, "
               "peak memory %.1f MiB, total %.2f s\n",
               policy_name(options.policy), options.budget, options.chunk_size,
               r.main_session().cache().size(0, 0), static_cast<double>(r.state_bytes()) / (1 << 20),
               static_cast<double>(peak_resident_bytes()) / (1 << 20), seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-read", usage, [&] { return run(argc, argv); }, argc, argv);
}
