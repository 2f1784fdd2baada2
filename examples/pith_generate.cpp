// SPDX-License-Identifier: MIT
// pith-generate: runs a Llama-family model (safetensors directory, .gguf or llama2.c .bin) on a prompt
// and prints the continuation as it is generated; prefill and decode speed go to stderr.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-generate MODEL [--tokenizer FILE] [--prompt TEXT | --prompt-ids 1,2,3] [--steps N]\n"
    "                     [--temperature T] [--top-p P] [--seed S] [--threads N] [--logits-out FILE.json]\n"
    "  MODEL            a Hugging Face safetensors directory, a .gguf file or a llama2.c .bin checkpoint\n"
    "  --prompt TEXT    encoded with the model's tokenizer (BOS added); default: just BOS\n"
    "  --prompt-ids     exactly these token ids (no BOS added)\n"
    "  --steps N        tokens generated after the prompt (default 256)\n"
    "  --temperature T  0 is greedy (default 0); --top-p P nucleus sampling (default 0.9); --seed S\n"
    "  --logits-out F   writes {\"ids\": [...], \"logits\": [[...], ...]} for every prompt position\n";

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  const auto tokenizer_path = args.take("--tokenizer");
  const auto prompt = args.take("--prompt");
  const auto prompt_ids = args.take("--prompt-ids");
  const auto steps = parse_number<std::size_t>(args.take("--steps").value_or("256"), "--steps");
  sampler_options sampling;
  sampling.temperature = parse_number<float>(args.take("--temperature").value_or("0"), "--temperature");
  sampling.top_p = parse_number<float>(args.take("--top-p").value_or("0.9"), "--top-p");
  sampling.seed = parse_number<std::uint64_t>(args.take("--seed").value_or("1"), "--seed");
  const auto threads = args.take("--threads");
  const auto logits_out = args.take("--logits-out");
  const auto rest = args.positional();
  if (rest.size() != 1) throw usage_error(rest.empty() ? "MODEL is missing" : "more than one MODEL given");
  if (prompt && prompt_ids) throw usage_error("--prompt and --prompt-ids exclude each other");
  if (threads) set_num_threads(parse_number<std::size_t>(*threads, "--threads"));

  const std::filesystem::path model_path = rest[0];
  const auto weights = load_model(model_path);
  const auto& config = weights.config;
  const auto tok = find_tokenizer(model_path, tokenizer_path, static_cast<std::int32_t>(config.vocab_size));

  std::vector<std::int32_t> ids;
  if (prompt_ids) {
    ids = parse_ids(*prompt_ids);
  } else if (prompt) {
    if (!tok) throw usage_error("--prompt needs a tokenizer (none found beside the model; give --tokenizer or --prompt-ids)");
    ids = tok->encode(*prompt, true);
  } else {
    ids = {config.bos_token_id};
  }
  if (ids.empty()) throw usage_error("the prompt is empty");

  session_options options;
  options.max_context = std::min(config.max_position_embeddings, ids.size() + steps);
  options.max_chunk = std::min<std::size_t>(512, ids.size());
  if (ids.size() + steps > config.max_position_embeddings)
    std::fprintf(stderr, "pith-generate: prompt + steps = %zu exceeds the model's context of %zu; stopping there\n",
                 ids.size() + steps, config.max_position_embeddings);
  if (ids.size() > config.max_position_embeddings)
    throw usage_error("the prompt (" + std::to_string(ids.size()) + " tokens) exceeds the model's context of " +
                      std::to_string(config.max_position_embeddings));
  session s(weights, options);
  sampler pick(sampling);

  auto emit = [&](std::int32_t previous, std::int32_t token) {
    if (tok)
      std::fputs(tok->decode(previous, token).c_str(), stdout);
    else
      std::printf("%d ", token);
    std::fflush(stdout);
  };
  for (std::size_t i = 0; i < ids.size(); ++i) emit(i == 0 ? -1 : ids[i - 1], ids[i]);

  const std::size_t vocab = config.vocab_size;
  std::vector<float> logits(logits_out ? ids.size() * vocab : vocab);
  auto start = std::chrono::steady_clock::now();
  s.forward(ids, logits.data(), logits_out.has_value());
  const double prefill_seconds = seconds_since(start);
  if (logits_out) {
    std::ofstream out(*logits_out);
    if (!out) throw io_error(*logits_out + ": cannot write the logits file");
    out << "{\"ids\": [";
    for (std::size_t i = 0; i < ids.size(); ++i) out << (i ? ", " : "") << ids[i];
    out << "], \"logits\": [";
    char number[32];
    for (std::size_t i = 0; i < ids.size(); ++i) {
      out << (i ? ",\n[" : "\n[");
      for (std::size_t v = 0; v < vocab; ++v) {
        std::snprintf(number, sizeof number, "%.9g", static_cast<double>(logits[i * vocab + v]));
        out << (v ? ", " : "") << number;
      }
      out << "]";
    }
    out << "]}\n";
  }
  std::vector<float> last(logits.end() - static_cast<std::ptrdiff_t>(vocab), logits.end());

  std::size_t generated = 0;
  std::int32_t previous = ids.back();
  start = std::chrono::steady_clock::now();
  while (generated < steps && s.position() < options.max_context) {
    const std::int32_t next = pick.sample(last);
    ++generated;
    if (next == config.eos_token_id || (next == config.bos_token_id && ids.size() + generated > 1)) break;
    emit(previous, next);
    previous = next;
    if (generated == steps || s.position() >= options.max_context) break;
    s.forward(std::span(&next, 1), last.data());
  }
  const double decode_seconds = seconds_since(start);
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr, "prefill: %zu tokens in %.3f s, %.1f tok/s\n", ids.size(), prefill_seconds,
               static_cast<double>(ids.size()) / prefill_seconds);
  std::fprintf(stderr, "decode: %zu tokens in %.3f s, %.1f tok/s\n", generated, decode_seconds,
               decode_seconds > 0 ? static_cast<double>(generated) / decode_seconds : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-generate", usage, [&] { return run(argc, argv); }, argc, argv);
}
