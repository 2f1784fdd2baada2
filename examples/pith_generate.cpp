// SPDX-License-Identifier: MIT
// pith-generate: runs a Llama-family model (safetensors directory, .gguf or llama2.c .bin) on a prompt
// and prints the continuation as it is generated; prefill and decode speed go to stderr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common.hpp"
#include "kv_type_option.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-generate MODEL [--tokenizer FILE] [--prompt TEXT | --prompt-ids 1,2,3] [--steps N] [--ignore-eos]\n"
    "                     [--temperature T] [--top-p P] [--seed S] [--threads N] [--logits-out FILE.json]\n"
    "                     [--allow-nonfinite] [--weights-type f32|f16|bf16] [--quantize TYPE]\n"
    "                     [--kv-type f32|f16|bf16|q8_0] [--chat [--system TEXT] [--no-think] [--chat-template FILE]]\n"
    "  MODEL            a Hugging Face safetensors directory, a .gguf file or a llama2.c .bin checkpoint\n"
    "  --prompt TEXT    encoded with the model's tokenizer (BOS added); default: just BOS\n"
    "  --chat           the prompt is a user message in the model's chat template (tokenizer_config.json\n"
    "                   beside a safetensors model, or the GGUF's tokenizer.chat_template): Llama 3, ChatML\n"
    "                   (Qwen), Gemma or Mistral [INST]; generation stops at the family's end of turn\n"
    "                   (<|eot_id|>, <|im_end|>, <end_of_turn>, </s>) and at EOS\n"
    "  --system TEXT    with --chat: a system message before the prompt\n"
    "  --no-think       with --chat, for templates with a thinking switch (Qwen3): the empty reasoning block\n"
    "                   that asks for the answer directly\n"
    "  --chat-template F  with --chat: the template from F (a tokenizer_config.json, a .gguf or a Jinja text file)\n"
    "  --prompt-ids     exactly these token ids (no BOS added; no tokenizer needed: without one the\n"
    "                   output is printed as ids)\n"
    "  --steps N        at most N tokens generated after the prompt (default 256): the first comes from\n"
    "                   the prefill's last logits, each further one from a single-token decode pass, so\n"
    "                   N tokens take N-1 decode passes. Generation stops early at EOS (or at a BOS after\n"
    "                   the first position) and where the model's context ends\n"
    "  --ignore-eos     do not stop at EOS/BOS (nor at --chat's end of turn): exactly N tokens (N-1 decode passes) unless the context ends\n"
    "  --temperature T  0 is greedy (default 0); --top-p P nucleus sampling (default 0.9); --seed S\n"
    "  --threads N      1..1024 (0: one per hardware thread)\n"
    "  --logits-out F   writes {\"ids\": [...], \"logits\": [[...], ...]} for every prompt position\n"
    "  --weights-type T converts every weight matrix to T at load (default: each is used in place in the\n"
    "                   checkpoint's own type, F32, F16, BF16 or a GGUF block type)\n"
    "  --quantize TYPE  quantizes every weight matrix at load: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k,\n"
    "                   q4_k, q5_k, q6_k, iq4_nl, iq4_xs, or the q4_k_m / q5_k_m mixtures\n"
    "  --allow-nonfinite  NaN/inf logits are only a warning (such tokens are never sampled; null in\n"
    "                   --logits-out) instead of an error naming the position\n"
    "  --kv-type T      what the KV cache stores keys and values as: f32 (default, exact), f16, bf16 (half\n"
    "                   the bytes) or q8_0 (34 bytes per 32 elements; head size a multiple of 32)\n";

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  const auto tokenizer_path = args.take("--tokenizer");
  const auto prompt = args.take("--prompt");
  const auto prompt_ids = args.take("--prompt-ids");
  const auto weights_type = args.take("--weights-type");
  const load_options load = parse_quantize(args.take("--quantize"), parse_weights_type(weights_type));
  const auto steps = parse_number<std::size_t>(args.take("--steps").value_or("256"), "--steps");
  const bool ignore_eos = args.flag("--ignore-eos");
  sampler_options sampling;
  sampling.temperature = parse_number<float>(args.take("--temperature").value_or("0"), "--temperature");
  sampling.top_p = parse_number<float>(args.take("--top-p").value_or("0.9"), "--top-p");
  sampling.seed = parse_number<std::uint64_t>(args.take("--seed").value_or("1"), "--seed");
  sampling.allow_nonfinite = args.flag("--allow-nonfinite");
  const auto threads = args.take("--threads");
  const auto logits_out = args.take("--logits-out");
  const dtype kv_type = parse_kv_type_option(args.take("--kv-type"));
  const bool chat = args.flag("--chat");
  const auto system = args.take("--system");
  const bool no_think = args.flag("--no-think");
  const auto chat_template_path = args.take("--chat-template");
  const auto rest = args.positional();
  if (rest.size() != 1) throw usage_error(rest.empty() ? "MODEL is missing" : "more than one MODEL given");
  if (prompt && prompt_ids) throw usage_error("--prompt and --prompt-ids exclude each other");
  if (!chat && (system || no_think || chat_template_path))
    throw usage_error(std::string(system ? "--system" : no_think ? "--no-think" : "--chat-template") + " needs --chat");
  if (chat && prompt_ids) throw usage_error("--chat and --prompt-ids exclude each other (--chat renders --prompt)");
  if (chat && !prompt) throw usage_error("--chat needs --prompt, the user's message");
  if (!(sampling.temperature >= 0.0f)) throw usage_error("--temperature must be >= 0");
  if (!(sampling.top_p > 0.0f && sampling.top_p <= 1.0f)) throw usage_error("--top-p must be in (0, 1]");
  if (threads) set_threads_option(*threads);

  const std::filesystem::path model_path = rest[0];
  const auto load_start = std::chrono::steady_clock::now();
  const auto weights = load_model(model_path, load);
  if (load.quantize_to)
    std::fprintf(stderr, "load: matrices quantized to %s at load in %.2f s\n", load.quantize_to->name().c_str(),
                 seconds_since(load_start));
  const auto& config = weights.config;
  const auto tok = find_tokenizer(model_path, tokenizer_path, static_cast<std::int32_t>(config.vocab_size));

  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> stop_ids;  // --chat: the family's end-of-turn tokens and EOS
  if (chat) {
    if (!tok) throw usage_error("--chat needs a tokenizer (none found beside the model; give --tokenizer)");
    const auto tmpl = find_chat_template(model_path, chat_template_path, *tok, "leaving out --chat");
    if (!tmpl)
      throw usage_error("--chat: " + model_path.string() + " has no chat template (no tokenizer_config.json with a "
                        "chat_template beside it, no tokenizer.chat_template key); give --chat-template FILE");
    std::vector<chat_message> messages;
    if (system) messages.push_back({"system", *system});
    messages.push_back({"user", *prompt});
    chat_render_options render;
    if (no_think) render.enable_thinking = false;
    const std::string text = tmpl->render(messages, render);
    // The rendered text carries BOS when the template writes it: BOS is then not added again.
    if (!tmpl->renders_bos()) ids = tokens_before_text(*tok);
    const auto body = encode_chat(*tok, *tmpl, text);
    ids.insert(ids.end(), body.begin(), body.end());
    stop_ids = chat_stop_tokens(*tok, *tmpl);
    std::fprintf(stderr, "chat: %s template from %s, %zu prompt tokens; stops at %s\n", tmpl->name(),
                 tmpl->source().c_str(), ids.size(), token_list(*tok, stop_ids).c_str());
    if (const auto warning = chat_vocabulary_warning(*tok, *tmpl); !warning.empty())
      std::fprintf(stderr, "pith-generate: warning: %s\n", warning.c_str());
  } else if (prompt_ids) {
    ids = parse_ids(*prompt_ids, config.vocab_size);
  } else if (prompt) {
    if (!tok) throw usage_error("--prompt needs a tokenizer (none found beside the model; give --tokenizer or --prompt-ids)");
    ids = tok->encode(*prompt, true);
  } else {
    ids = {config.bos_token_id};
  }
  if (ids.empty()) throw usage_error("the prompt is empty");
  const std::size_t context = config.max_position_embeddings;
  if (ids.size() > context)
    throw usage_error("the prompt (" + std::to_string(ids.size()) + " tokens) exceeds the model's context of " +
                      std::to_string(context));

  // The last generated token is not fed back, so N tokens need the prompt's positions and N - 1 more;
  // the context allows at most context - prompt + 1 tokens.
  const std::size_t most_tokens = context - ids.size() + 1;
  if (steps > most_tokens)
    std::fprintf(stderr, "pith-generate: the prompt (%zu tokens) + --steps %zu exceeds the model's context of %zu; "
                 "stopping after %zu tokens\n", ids.size(), steps, context, most_tokens);
  session_options options;
  options.max_context = ids.size() + (steps == 0 ? 0 : std::min(steps, most_tokens) - 1);
  options.max_chunk = std::min<std::size_t>(512, ids.size());
  check_kv_type(kv_type, config.head_dim, "--kv-type");
  options.kv_type = kv_type;
  session s(weights, options);
  sampler pick(sampling);

  // Non-finite logits mean broken weights or overflowing arithmetic: an error naming the position,
  // or with --allow-nonfinite a warning (the first few positions only).
  const std::size_t vocab = config.vocab_size;
  std::size_t nonfinite_rows = 0;
  auto check_row = [&](const float* row, std::size_t position) {
    const std::size_t bad = sampler::first_nonfinite(std::span(row, vocab));
    if (bad == vocab) return;
    const std::string what = model_path.string() + ": the logits at position " + std::to_string(position) +
                             " are not finite (token id " + std::to_string(bad) + " is " +
                             (std::isnan(row[bad]) ? "nan" : row[bad] > 0 ? "+inf" : "-inf") +
                             "): the weights hold NaN/inf or the arithmetic overflowed";
    if (!sampling.allow_nonfinite) throw format_error(what + " (--allow-nonfinite makes this a warning)");
    if (nonfinite_rows++ < 3) std::fprintf(stderr, "pith-generate: warning: %s\n", what.c_str());
  };

  auto emit = [&](std::int32_t previous, std::int32_t token) {
    if (tok)
      std::fputs(tok->decode(previous, token).c_str(), stdout);
    else
      std::printf("%d ", token);
    std::fflush(stdout);
  };
  for (std::size_t i = 0; i < ids.size(); ++i) emit(i == 0 ? -1 : ids[i - 1], ids[i]);

  std::vector<float> logits(logits_out ? ids.size() * vocab : vocab);
  auto start = std::chrono::steady_clock::now();
  s.forward(ids, logits.data(), logits_out.has_value());
  const double prefill_seconds = seconds_since(start);
  if (logits_out) {
    for (std::size_t i = 0; i < ids.size(); ++i) check_row(logits.data() + i * vocab, i);
    std::ofstream out(*logits_out);
    if (!out) throw io_error(*logits_out + ": cannot write the logits file");
    out << "{\"ids\": [";
    for (std::size_t i = 0; i < ids.size(); ++i) out << (i ? ", " : "") << ids[i];
    out << "], \"logits\": [";
    char number[32];
    for (std::size_t i = 0; i < ids.size(); ++i) {
      out << (i ? ",\n[" : "\n[");
      for (std::size_t v = 0; v < vocab; ++v) {
        const float value = logits[i * vocab + v];
        if (std::isfinite(value))
          std::snprintf(number, sizeof number, "%.9g", static_cast<double>(value));
        else
          std::snprintf(number, sizeof number, "null");  // JSON has no NaN or infinity
        out << (v ? ", " : "") << number;
      }
      out << "]";
    }
    out << "]}\n";
    out.close();
    if (!out) throw io_error(*logits_out + ": writing the logits file failed");
  } else {
    check_row(logits.data(), ids.size() - 1);
  }
  std::vector<float> last(logits.end() - static_cast<std::ptrdiff_t>(vocab), logits.end());

  std::size_t generated = 0, passes = 0;
  std::string stopped;
  std::int32_t previous = ids.back();
  start = std::chrono::steady_clock::now();
  while (generated < steps) {
    const std::int32_t next = pick.sample(last);
    ++generated;
    if (!ignore_eos && chat && std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      stopped = token_label(*tok, next);
      --generated;  // the stop token is not part of the output
      break;
    }
    if (!ignore_eos && (next == config.eos_token_id || (next == config.bos_token_id && ids.size() + generated > 1))) {
      stopped = next == config.eos_token_id ? "EOS" : "BOS";
      --generated;
      break;
    }
    emit(previous, next);
    previous = next;
    if (generated == steps) break;
    if (s.position() >= options.max_context) {
      stopped = "the model's context";
      break;
    }
    s.forward(std::span(&next, 1), last.data());
    ++passes;
    check_row(last.data(), s.position() - 1);
  }
  const double decode_seconds = seconds_since(start);
  std::printf("\n");
  std::fflush(stdout);
  std::fprintf(stderr, "prefill: %zu tokens in %.3f s, %.1f tok/s\n", ids.size(), prefill_seconds,
               static_cast<double>(ids.size()) / prefill_seconds);
  std::fprintf(stderr, "decode: %zu tokens generated, %zu decode passes in %.3f s, %.1f tok/s%s%s\n", generated, passes,
               decode_seconds, decode_seconds > 0 ? static_cast<double>(passes) / decode_seconds : 0.0,
               stopped.empty() ? "" : ", stopped at ", stopped.c_str());
  std::size_t kv_bytes = 0;
  for (const auto& layer : s.memory_report()) kv_bytes += layer.kv_cache_bytes;
  std::fprintf(stderr, "memory: weights %.1f MiB (%s matrices), session %.1f MiB (KV cache %s %.1f MiB), "
               "peak resident %.1f MiB\n",
               static_cast<double>(weights.parameter_bytes()) / (1 << 20),
               matrix_types(weights).c_str(),
               static_cast<double>(s.bytes_allocated()) / (1 << 20), kv_type_name(kv_type).c_str(),
               static_cast<double>(kv_bytes) / (1 << 20), static_cast<double>(peak_resident_bytes()) / (1 << 20));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-generate", usage, [&] { return run(argc, argv); }, argc, argv);
}
