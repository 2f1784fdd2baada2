// SPDX-License-Identifier: MIT
// pith-read: reads a long document in chunks with a KV-cache eviction policy and a fixed budget,
// then answers an instruction; memory does not grow with the document. Progress, speed, cache size
// and peak memory go to stderr.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include <pith/core/memory.hpp>
#include <pith/io/tokenizer_stream.hpp>
#include <pith/runtime/reader.hpp>

#include "common.hpp"
#include "kv_type_option.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-read MODEL [--tokenizer FILE] --document FILE|- --instruction TEXT [--policy NAME] [--budget K]\n"
    "                 [--chunk L] [--positions reindexed|original] [--steps N] [--threads N] [--expect TEXT]\n"
    "                 [--citrus-pool K] [--pool-kernel K] [--pool-mode avg|max] [--logits-out FILE.json]\n"
    "                 [--quantize TYPE] [--kv-type f32|f16|bf16|q8_0]\n"
    "                 [--protocol chunked|oneshot] [--ratio R] [--question-in-cut] [--adakv-alpha A]\n"
    "                 [--raw | --system TEXT | --chat-template FILE]\n"
    "  --document FILE  read in blocks and tokenized as it is read (memory does not grow with it); - reads stdin\n"
    "  --raw      no chat template: BOS, the document, the instruction (the default when the model has no\n"
    "             template). With a template (tokenizer_config.json beside the model, the GGUF's\n"
    "             tokenizer.chat_template) the user turn holds the document, a blank line and the instruction,\n"
    "             and the answer is the assistant's turn; it ends at the family's end-of-turn token\n"
    "  --system   a system message before the user turn (with a template)\n"
    "  --chat-template F  the template from F (a tokenizer_config.json, a .gguf or a Jinja text file)\n"
    "  --policy   full, streaming, h2o, tova, snapkv, roco, citrus-cse, citrus-shared (default), citrus-separate,\n"
    "             random, knorm, observed-attention, chunkkv, snapkv-question, keydiff, pyramidkv, finch,\n"
    "             criticalkv, expected-attention\n"
    "             (docs/eviction.md); adakv(NAME) for AdaKV's head-adaptive budgets over NAME's scores per KV\n"
    "             head, NAME one of tova, snapkv, citrus-cse, citrus-shared, snapkv-question, knorm, keydiff\n"
    "             (each layer's kv heads x --budget shared unequally by its KV heads; docs/eviction.md, \"AdaKV\")\n"
    "  --adakv-alpha  adakv(NAME): the share of --budget every KV head keeps for itself, in [0, 1] (default 0.2)\n"
    "  --budget   k, the states kept besides the newest chunk (default 768)\n"
    "  --chunk    L, tokens read per step (default 256)\n"
    "  --steps    answer tokens at most (default 64)\n"
    "  --protocol chunked (default: chunks of --chunk, the cache bounded by --budget) or oneshot (the whole\n"
    "             document in one pass with every state kept, one cut by the policy, then the instruction;\n"
    "             memory grows with the document; docs/eviction.md, \"Protocols\")\n"
    "  --ratio    oneshot: a compression ratio r in [0, 1) instead of --budget: floor(n (1 - r)) states kept\n"
    "  --question-in-cut  oneshot: the instruction's queries score the cut (default: the document's own)\n"
    "  --citrus-pool  CItruS scores averaged over K neighbouring slots before the top-k (default 1: off)\n"
    "  --pool-kernel  the SnapKV family's pooling window (snapkv, snapkv-question, chunkkv, pyramidkv,\n"
    "             finch, criticalkv), odd\n"
    "             (default 7); --pool-mode avg (default: zero padding, divided by K) or max\n"
    "  --quantize quantizes the weight matrices at load: q8_0, q4_0, q4_k, q6_k, ... or q4_k_m / q5_k_m\n"
    "  --expect   the expected answer: printed after the answer with whether the answer starts with it\n"
    "             (exit status 0 either way)\n"
    "  --logits-out F  writes {\"ids\": [answer ids], \"logits\": [[...]]}: the row the first answer token comes from\n"
    "  --kv-type  what the KV cache stores keys and values as: f32 (default, exact), f16, bf16 (half the\n"
    "             bytes) or q8_0 (34 bytes per 32 elements; the model's head size must be a multiple of 32)\n";

// Bytes read from the document at a time; the tokenizer holds at most its window besides.
constexpr std::size_t block_bytes = std::size_t{1} << 14;

// The document, read block by block from a file or stdin ("-").
class document_reader {
 public:
  explicit document_reader(const std::string& path) : name_(path == "-" ? "stdin" : path) {
    if (path == "-") {
      file_ = stdin;
      return;
    }
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (status.type() == std::filesystem::file_type::not_found)
      throw pith::io_error(path + ": the document does not exist");
    if (status.type() == std::filesystem::file_type::directory)
      throw pith::io_error(path + ": the document is a directory, not a file");
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw pith::io_error(path + ": cannot open the document: " + std::strerror(errno));
    owned_ = true;
    if (status.type() == std::filesystem::file_type::regular) size_ = std::filesystem::file_size(path, ec);
    if (ec) size_.reset();
  }
  document_reader(const document_reader&) = delete;
  document_reader& operator=(const document_reader&) = delete;
  ~document_reader() {
    if (owned_) std::fclose(file_);
  }

  /// The next block (empty at the end); io_error when reading fails.
  std::string_view next() {
    buffer_.resize(block_bytes);
    const std::size_t got = std::fread(buffer_.data(), 1, buffer_.size(), file_);
    if (got < buffer_.size() && std::ferror(file_)) throw pith::io_error(name_ + ": reading the document failed");
    read_ += got;
    return std::string_view(buffer_.data(), got);
  }
  std::size_t bytes_read() const noexcept { return read_; }
  /// The file's size when it is a regular file (stdin and pipes have none).
  std::optional<std::uintmax_t> size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::optional<std::uintmax_t> size_;
  std::string buffer_;
  std::size_t read_ = 0;
};

// Redraws at most every 100 ms (and always when `last`): a chunk can take well under a millisecond.
// `fraction` < 0 means unknown (stdin): then tokens and speed only, no bar and no ETA.
void progress_bar(std::size_t tokens, double fraction, double seconds, bool last = false) {
  static double last_drawn = -1.0;
  if (!last && last_drawn >= 0.0 && seconds - last_drawn < 0.1) return;
  last_drawn = seconds;
  const double speed = seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
  if (fraction < 0) {
    std::fprintf(stderr, "\r%zu tokens, %.0f tok/s   ", tokens, speed);
  } else {
    fraction = std::min(fraction, 1.0);
    constexpr int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %zu tokens, %.0f tok/s", filled, "##############################",
                 width - filled, "", 100.0 * fraction, tokens, speed);
    if (!last && fraction > 0) std::fprintf(stderr, ", ETA %.0f s   ", seconds * (1.0 - fraction) / fraction);
    else std::fprintf(stderr, "             ");
  }
  std::fflush(stderr);
}

// {"ids": [...], "logits": [[...]]}, the shape pith-generate's --logits-out writes.
void write_logits(std::ofstream& out, const std::string& path, const std::vector<std::int32_t>& ids,
                  const std::vector<float>& row) {
  out << "{\"ids\": [";
  for (std::size_t i = 0; i < ids.size(); ++i) out << (i ? ", " : "") << ids[i];
  out << "], \"logits\": [\n[";
  char number[32];
  for (std::size_t v = 0; v < row.size(); ++v) {
    std::snprintf(number, sizeof number, "%.9g", static_cast<double>(row[v]));
    out << (v ? ", " : "") << number;
  }
  out << "]]}\n";
  out.close();
  if (out.fail()) throw pith::io_error(path + ": writing the logits failed");
}

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  const auto tokenizer_path = args.take("--tokenizer");
  const auto document_path = args.take("--document");
  const auto instruction_text = args.take("--instruction");
  reader_options options;
  const auto label = parse_policy_label(args.take("--policy").value_or("citrus-shared"));
  options.policy = label.kind;
  options.head_adaptive = label.head_adaptive;
  if (const auto alpha = args.take("--adakv-alpha")) {
    if (!label.head_adaptive) throw usage_error("--adakv-alpha applies to an adakv(NAME) policy");
    options.adakv_alpha = parse_number<double>(*alpha, "--adakv-alpha");
  }
  options.budget = parse_number<std::size_t>(args.take("--budget").value_or("768"), "--budget");
  options.chunk_size = parse_number<std::size_t>(args.take("--chunk").value_or("256"), "--chunk");
  const auto positions = args.take("--positions").value_or("reindexed");
  if (positions == "original") options.positions = position_mode::original;
  else if (positions != "reindexed") throw usage_error("--positions must be reindexed or original");
  const auto steps = parse_number<std::size_t>(args.take("--steps").value_or("64"), "--steps");
  options.max_answer_tokens = steps;
  const auto threads = args.take("--threads");
  const auto expect = args.take("--expect");
  const auto logits_path = args.take("--logits-out");
  const auto load = parse_quantize(args.take("--quantize"));
  options.citrus_pool = parse_number<std::size_t>(args.take("--citrus-pool").value_or("1"), "--citrus-pool");
  options.snapkv_kernel = parse_number<std::size_t>(args.take("--pool-kernel").value_or("7"), "--pool-kernel", 1, 1001);
  if (options.snapkv_kernel % 2 == 0) throw usage_error("--pool-kernel must be odd (a window centred on the slot)");
  if (const auto mode = args.take("--pool-mode")) {
    if (*mode != "avg" && *mode != "max") throw usage_error("--pool-mode must be avg or max, not " + *mode);
    options.snapkv_pool = parse_pool_mode(*mode);
  }
  options.kv_type = parse_kv_type_option(args.take("--kv-type"));
  // The spec's "Budgets and protocols" (docs/eviction.md, "Protocols").
  if (const auto protocol = args.take("--protocol")) {
    if (*protocol != "chunked" && *protocol != "oneshot")
      throw usage_error("--protocol must be chunked or oneshot, not '" + *protocol + "'");
    options.protocol = parse_protocol(*protocol);
  }
  const bool oneshot = options.protocol == reading_protocol::oneshot;
  if (const auto ratio = args.take("--ratio")) {
    if (!oneshot) throw usage_error("--ratio applies to --protocol oneshot");
    options.ratio = parse_number<double>(*ratio, "--ratio");
    if (!(*options.ratio >= 0.0 && *options.ratio < 1.0)) throw usage_error("--ratio: " + *ratio + " is outside [0, 1)");
  }
  options.question_in_cut = args.flag("--question-in-cut");
  if (options.question_in_cut && !oneshot) throw usage_error("--question-in-cut applies to --protocol oneshot");
  const bool raw = args.flag("--raw");
  const auto system = args.take("--system");
  const auto chat_template_path = args.take("--chat-template");
  const auto rest = args.positional();
  if (rest.size() != 1) throw usage_error(rest.empty() ? "MODEL is missing" : "more than one MODEL given");
  if (!document_path) throw usage_error("--document is required");
  if (!instruction_text) throw usage_error("--instruction is required");
  if (raw && (system || chat_template_path))
    throw usage_error(std::string(system ? "--system" : "--chat-template") + " and --raw exclude each other");
  if (threads) {
    // The reader computes on a pool of its own (0: one thread per hardware thread).
    const auto count = parse_number<std::size_t>(*threads, "--threads", 0, thread_pool::max_threads);
    const unsigned hardware = std::thread::hardware_concurrency();
    options.executor = std::make_shared<thread_pool>(count != 0 ? count : std::max(hardware, 1u));
  }

  document_reader document(*document_path);
  std::ofstream logits_out;  // opened now: a bad path fails before a long read
  if (logits_path) {
    logits_out.open(*logits_path, std::ios::binary);
    if (!logits_out) throw io_error(*logits_path + ": cannot write the logits file");
  }
  const std::filesystem::path model_path = rest[0];
  const auto weights = load_model(model_path, load);
  check_kv_type(options.kv_type, weights.config.head_dim, "--kv-type");
  const auto tok = find_tokenizer(model_path, tokenizer_path, static_cast<std::int32_t>(weights.config.vocab_size));
  if (!tok) throw usage_error("no tokenizer found beside the model; give --tokenizer");

  // The prompt. Raw: BOS, the document, the instruction. With the model's chat template, one user
  // turn holds the document, a blank line and the instruction, and the answer is the assistant's
  // turn: the text before the user's content and the document are read as the document (the
  // reader may evict from both), the instruction with the rest of the template (its end of turn
  // and the assistant's header) is the instruction CItruS scores with and the answer follows.
  const auto tmpl = raw ? std::nullopt : find_chat_template(model_path, chat_template_path, *tok, "--raw");
  if (!tmpl && system) throw usage_error("--system needs a chat template (the model has none; give --chat-template)");
  std::vector<std::int32_t> prefix;     // tokens before the document
  std::string prefix_text;              // text before the document, tokenized with it
  std::vector<std::int32_t> stop_ids = {weights.config.eos_token_id};
  std::vector<std::int32_t> instruction;
  bool trim_document = false;           // strip the document's leading whitespace (trimming templates)
  if (tmpl) {
    chat_render_options render;
    render.enable_thinking = false;     // Qwen3: answer directly (the answer is checked from its start)
    const auto frame = tmpl->user_turn(system, render);
    // The frame's text after its last special token belongs to the same piece of text as the
    // document's start ("user\n", "[INST] "): it is tokenized together with the document.
    std::size_t cut = 0;
    for (const std::string& special : tmpl->special_strings())
      for (std::size_t at = frame.before.find(special); at != std::string::npos; at = frame.before.find(special, at + 1))
        cut = std::max(cut, at + special.size());
    if (!tmpl->renders_bos()) prefix = tokens_before_text(*tok);
    const auto head = encode_chat(*tok, *tmpl, std::string_view(frame.before).substr(0, cut));
    prefix.insert(prefix.end(), head.begin(), head.end());
    prefix_text = frame.before.substr(cut);
    std::string question = *instruction_text;
    if (tmpl->trims_content()) {
      trim_document = true;
      question.resize(chat_detail::before_trailing_space(question));
    }
    instruction = encode_chat(*tok, *tmpl, question + frame.after);
    stop_ids = chat_stop_tokens(*tok, *tmpl);
    if (std::find(stop_ids.begin(), stop_ids.end(), weights.config.eos_token_id) == stop_ids.end())
      stop_ids.push_back(weights.config.eos_token_id);
    std::fprintf(stderr, "chat: %s template from %s (--raw reads without it); stops at %s\n", tmpl->name(),
                 tmpl->source().c_str(), token_list(*tok, stop_ids).c_str());
    if (const auto warning = chat_vocabulary_warning(*tok, *tmpl); !warning.empty())
      std::fprintf(stderr, "pith-read: warning: %s\n", warning.c_str());
  } else {
    instruction = tok->encode(*instruction_text, false);
  }
  const std::size_t model_context = weights.config.max_position_embeddings;

  // The document is tokenized block by block as it is read (io/tokenizer_stream.hpp), and the
  // tokens go to the reader as they come: memory does not grow with the document, except under
  // `full`, which keeps every state and so needs the token count for its cache first.
  streaming_encoder encoder(*tok, !tmpl);
  std::vector<std::int32_t> tokens = prefix;
  if (!prefix_text.empty()) encoder.push(prefix_text, tokens);
  // A trimming template strips the content's leading whitespace: the document's, block by block.
  const auto push_block = [&](std::string_view block) {
    if (trim_document) {
      const std::size_t space = chat_detail::leading_space(block);
      block.remove_prefix(space);
      if (!block.empty()) trim_document = false;
    }
    encoder.push(block, tokens);
  };
  // The blank line between the document and the instruction ends the document's text.
  const auto finish_document = [&] {
    if (tmpl) encoder.push("\n\n", tokens);
    encoder.finish(tokens);
  };
  std::int32_t last_token = -1;
  const auto empty_check = [&] {
    if (document.bytes_read() == 0) throw argument_error(document.name() + ": the document is empty");
  };
  // The fraction read: tokens of the total under `full`; else bytes of the file's size, the block
  // being fed counted in proportion to its tokens done; -1 for stdin and pipes (no size).
  std::size_t total_tokens = 0;
  std::size_t block_start = 0, block_tokens = 0, tokens_before = 0;  // the block being fed
  const auto fraction = [&](std::size_t done) {
    if (total_tokens > 0) return static_cast<double>(done) / static_cast<double>(total_tokens);
    if (!document.size()) return -1.0;
    if (*document.size() == 0) return 1.0;
    const double part = block_tokens > 0 ? std::min(1.0, static_cast<double>(done - std::min(done, tokens_before)) /
                                                             static_cast<double>(block_tokens))
                                         : 1.0;
    const double bytes = static_cast<double>(block_start) + part * static_cast<double>(document.bytes_read() - block_start);
    return bytes / static_cast<double>(*document.size());
  };
  if (options.policy == policy_kind::full) {
    for (std::string_view block; !(block = document.next()).empty();) push_block(block);
    empty_check();
    finish_document();
    total_tokens = tokens.size();
    options.max_context = tokens.size() + instruction.size() + steps + 1;
    if (options.max_context - 1 > model_context)
      std::fprintf(stderr, "pith-read: document + instruction + steps = %zu exceeds the model's context of %zu; "
                           "policy full reads on at positions the model was not trained on\n",
                   options.max_context - 1, model_context);
  }

  reader r(weights, options, instruction);
  const auto start = std::chrono::steady_clock::now();
  // Under original positions an evicting policy's positions grow with the document too.
  bool warned = options.policy == policy_kind::full || options.positions == position_mode::reindexed;
  const auto progress = [&](std::size_t done) {
    if (!warned && done + instruction.size() + steps > model_context) {
      warned = true;
      std::fprintf(stderr, "\npith-read: document + instruction + steps exceed the model's context of %zu; "
                           "with --positions original the positions grow past those the model was trained on\n",
                   model_context);
    }
    progress_bar(done, fraction(done), seconds_since(start));
  };
  const auto feed = [&] {
    if (tokens.empty()) return;
    last_token = tokens.back();
    tokens_before = r.stats().tokens_read;
    block_tokens = tokens.size();
    r.feed(tokens, progress);
    tokens.clear();
  };
  if (options.policy == policy_kind::full) {
    feed();
  } else {
    for (std::string_view block; !(block = document.next()).empty();) {
      push_block(block);
      feed();
      block_start = document.bytes_read();
    }
    empty_check();
    finish_document();
    feed();
  }
  if (encoder.forced_cuts() > 0)
    std::fprintf(stderr, "\npith-read: the document has runs of more than %zu bytes with no place the tokenizer may "
                         "cut (no space or line break); they were cut %zu times, and the tokens there may differ "
                         "from those of the whole text\n",
                 encoder.window(), encoder.forced_cuts());

  sampler greedy;
  std::string answer;
  std::int32_t previous = instruction.empty() ? last_token : instruction.back();
  // The reader stops at the first stop id; the answer also ends at any other (Llama 3's
  // <|end_of_text|> after <|eot_id|>): what follows one is not part of it.
  bool ended = false;
  auto answer_tokens = r.answer(steps, greedy, [&](std::int32_t token) {
    if (ended || std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
      ended = true;
      return;
    }
    const std::string piece = tok->decode(previous, token);
    previous = token;
    answer += piece;
  }, stop_ids.front());
  if (const auto stop = std::find_first_of(answer_tokens.begin(), answer_tokens.end(), stop_ids.begin(), stop_ids.end());
      stop != answer_tokens.end() && stop + 1 != answer_tokens.end())
    answer_tokens.erase(stop + 1, answer_tokens.end());
  const double seconds = seconds_since(start);
  const auto& stats = r.stats();
  progress_bar(stats.tokens_read, 1.0, stats.reading_seconds, true);
  std::fprintf(stderr, "\n");
  if (logits_path) write_logits(logits_out, *logits_path, answer_tokens, r.answer_logits());
  std::printf("answer:%s%s\n", answer.empty() || answer[0] == ' ' ? "" : " ", answer.c_str());
  if (expect) {
    const auto expected = tok->encode(*expect, false);
    const bool correct = !expected.empty() && answer_tokens.size() >= expected.size() &&
                         std::equal(expected.begin(), expected.end(), answer_tokens.begin());
    std::printf("expected: %s (%s)\n", expect->c_str(), correct ? "correct" : "wrong");
  }
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) throw io_error("stdout: writing the answer failed");
  std::fprintf(stderr, "read %zu tokens in %zu chunks in %.2f s: %.1f tok/s (eviction %.3f s, instruction passes %.3f s)\n",
               stats.tokens_read, stats.chunks, stats.reading_seconds,
               static_cast<double>(stats.tokens_read) / stats.reading_seconds, stats.eviction_seconds,
               stats.instruction_seconds);
  std::size_t kv_bytes = 0, full_layer = 0, window_layer = 0, windowed = 0, window_bytes = 0;
  const auto report = r.memory_report();
  for (std::size_t l = 0; l < report.size(); ++l) {
    kv_bytes += report[l].kv_cache_bytes;
    if (report[l].window != 0) {
      if (windowed++ == 0) window_layer = l;
      window_bytes += report[l].kv_cache_bytes;
    } else if (report[full_layer].window != 0) {
      full_layer = l;
    }
  }
  if (windowed != 0)
    std::fprintf(stderr, "sliding-window layers: %zu of %zu, window %zu, %zu states each, KV cache %.1f MiB (fixed)\n",
                 windowed, report.size(), report[window_layer].window,
                 r.main_session().cache().size(window_layer, 0), static_cast<double>(window_bytes) / (1 << 20));
  // Under AdaKV the KV heads of a layer hold different counts: their mean, and their range.
  const auto& cache = r.main_session().cache();
  std::size_t fewest = cache.size(full_layer, 0), most = fewest, total = 0;
  for (std::size_t g = 0; g < cache.kv_heads(); ++g) {
    fewest = std::min(fewest, cache.size(full_layer, g));
    most = std::max(most, cache.size(full_layer, g));
    total += cache.size(full_layer, g);
  }
  const std::string heads = fewest == most ? "" : " (per KV head: " + std::to_string(fewest) + " to " + std::to_string(most) + ")";
  std::fprintf(stderr, "policy %s, budget %zu, chunk %zu: cache %zu states per layer%s, KV cache %s %.1f MiB, "
               "session state %.1f MiB, peak memory %.1f MiB, total %.2f s\n",
               policy_label_name(options.policy, options.head_adaptive).c_str(), options.budget, options.chunk_size,
               total / std::max<std::size_t>(cache.kv_heads(), 1), heads.c_str(), kv_type_name(options.kv_type).c_str(),
               static_cast<double>(kv_bytes) / (1 << 20), static_cast<double>(r.state_bytes()) / (1 << 20),
               static_cast<double>(peak_resident_bytes()) / (1 << 20), seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-read", usage, [&] { return run(argc, argv); }, argc, argv);
}
