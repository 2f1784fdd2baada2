// SPDX-License-Identifier: MIT
// pith-evict-bench: accuracy, speed and memory of the eviction policies on generated long documents
// (the toy models' passkey, kv, hop: include/pith/runtime/toy_tasks.hpp; RULER's synthetic tasks in the
// model's own tokens: include/pith/runtime/ruler_tasks.hpp), swept over budgets, lengths, tasks, needle
// depths and seeds; and the perplexity of a text's continuation after reading it with each policy.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include <pith/core/memory.hpp>
#include <pith/runtime/reader.hpp>
#include <pith/runtime/ruler_tasks.hpp>
#include <pith/runtime/toy_tasks.hpp>

#include "common.hpp"
#include "kv_type_option.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-evict-bench --model DIR [--policies LIST] [--budgets LIST] [--lengths LIST] [--tasks LIST]\n"
    "                        [--suite toy|ruler] [--depths LIST] [--tokenizer FILE] [--answer-tokens N]\n"
    "                        [--vt-chains N]\n"
    "                        [--seeds N] [--seed-base S] [--facts F] [--chunk L] [--csv FILE] [--json FILE]\n"
    "                        [--full-max-length N] [--citrus-pool K] [--pool-kernel K] [--pool-mode avg|max]\n"
    "                        [--threads N] [--quick] [--quantize TYPE] [--kv-type f32|f16|bf16|q8_0]\n"
    "                        [--protocol chunked|oneshot|chunked,oneshot] [--ratios LIST] [--question-in-cut]\n"
    "                        [--different-question] [--positions reindexed|original] [--sinks N]\n"
    "                        [--adakv-alpha A]\n"
    "                        [--perplexity FILE [--ppl-tokens N]]\n"
    "       pith-evict-bench --make-document FILE [--task kv] [--length N] [--seed S] [--facts F]\n"
    "                        [--depth D] [--vt-chains N] [--model DIR | --tokenizer FILE]\n"
    "  --policies  comma-separated: full, streaming, h2o, tova, snapkv, roco, citrus-cse, citrus-shared,\n"
    "              citrus-separate (the default: these nine), random, knorm, observed-attention, chunkkv,\n"
    "              snapkv-question, keydiff, pyramidkv, finch, criticalkv, expected-attention, or all; a citrus-*\n"
    "              name with +poolK (K odd), e.g. citrus-shared+pool7, pools its scores over K neighbouring slots\n"
    "              (docs/eviction.md); adakv(NAME) reads with AdaKV's head-adaptive budgets over NAME's scores\n"
    "              per KV head, NAME one of tova, snapkv, citrus-cse, citrus-shared, snapkv-question, knorm,\n"
    "              keydiff (each layer's kv heads x k shared unequally by its KV heads; docs/eviction.md,\n"
    "              \"AdaKV\"), e.g. adakv(snapkv), adakv(citrus-shared)+pool7\n"
    "  --adakv-alpha A  the share of k each KV head keeps for itself under adakv(NAME), in [0, 1] (default 0.2)\n"
    "  --budgets   k values (default 16,32,64,128,256; RULER tasks alone: 512,1024,2048,3072; none when only\n"
    "              --ratios is given)\n"
    "  --protocol  chunked (default: the document read in chunks of --chunk with a cache bounded by the budget),\n"
    "              oneshot (kvpress's: the whole document prefilled with every state kept, one cut by the policy,\n"
    "              then the question), or both, comma-separated (docs/eviction.md, \"Protocols\")\n"
    "  --ratios    compression ratios r in [0, 1), comma-separated, beside the budgets: a document of n tokens\n"
    "              keeps floor(n (1 - r)) states (kvpress's convention); the chunked protocol reads with that\n"
    "              budget k, the oneshot protocol cuts to it\n"
    "  --question-in-cut  oneshot: the question's queries score the cut (default: the document's own last\n"
    "              queries, kvpress's default); applies to the policies that score with a window of queries\n"
    "  --different-question  kv task only: the instruction read with names another fact of the document\n"
    "              than the question asked at the end (the cut's scores follow the instruction)\n"
    "  --positions reindexed (default: kept states take contiguous positions, so a model reads beyond its\n"
    "              trained context) or original (every state keeps its document position, as kvpress and the\n"
    "              reference implementations do; a toy model trained at 512 tokens fails beyond that)\n"
    "  --sinks     first slots protected from eviction by streaming, h2o, roco and expected-attention (whose\n"
    "              query statistics also leave out the first N document tokens) (default 4)\n"
    "  --lengths   in tokens, BOS included (default 1000,8000; RULER tasks alone: 4096)\n"
    "  --tasks     the toy models' passkey, kv, hop (default passkey,kv; they need a toy model) and RULER's\n"
    "              niah_single_1, niah_single_2, niah_single_3, niah_multikey_1, niah_multikey_2,\n"
    "              niah_multikey_3, niah_multivalue, niah_multiquery, vt, cwe, fwe, written in the model's\n"
    "              tokenizer (docs/eviction.md, \"RULER's tasks\")\n"
    "  --suite     ruler: every RULER task; toy: passkey, kv, hop (instead of --tasks)\n"
    "  --depths    needle depths in 0..1 for the tasks with one asked needle (niah_single_*, niah_multikey_*),\n"
    "              comma-separated (0,0.5,1) or even:N, N evenly spaced from 0 to 1 (RULER: even:40);\n"
    "              default: one of RULER's 40 depths drawn per document\n"
    "  --tokenizer the tokenizer of RULER documents (default: the one beside the model)\n"
    "  --answer-tokens  tokens a RULER answer may take (default RULER's: niah 128, vt 30, cwe 120, fwe 50)\n"
    "  --vt-chains vt's chains of assignments: the asked one and N - 1 distractors (default 1, as RULER)\n"
    "  --seeds     documents per cell (default 10, seeds S..S+N-1)\n"
    "  --facts     kv/hop facts per document (default 8); --chunk L (default 64)\n"
    "  --full-max-length  the full cache runs only up to this length (default 4096: its cost grows as n^2)\n"
    "  --citrus-pool K  the pooling window of the citrus-* names given without +poolK (default 1: off)\n"
    "  --pool-kernel K  the SnapKV family's pooling window (snapkv, snapkv-question, chunkkv, pyramidkv,\n"
    "              finch, criticalkv), odd\n"
    "              (default 7); --pool-mode avg (default: zero padding, divided by K) or max\n"
    "  --threads   threads per document, 1..1024 (default 1: the toy models are too small to split)\n"
    "  --quick     a sweep of about a minute on a toy model: the 8 evicting policies and citrus-shared+pool7\n"
    "              x budgets 16,64,256 x 8000 tokens (RULER tasks: 4096)\n"
    "              x passkey,kv x 10 seeds\n"
    "  --quantize  quantizes the model's weight matrices at load: q8_0, q4_0, q4_k, q6_k, ... or q4_k_m / q5_k_m\n"
    "  --kv-type   what the KV caches store keys and values as: f32 (default, exact), f16, bf16 or q8_0\n"
    "              (q8_0: the model's head size must be a multiple of 32)\n"
    "  --make-document writes the document's text to FILE and prints its instruction and expected answer;\n"
    "              a RULER document's length is counted in the tokens of --tokenizer or --model's tokenizer,\n"
    "              else in whitespace-separated words\n"
    "  --perplexity  instead of tasks: reads FILE's text in the model's tokenizer (or --tokenizer), BOS first;\n"
    "              for each length L the first L tokens are the document and the next --ppl-tokens N\n"
    "              (default 256) the continuation, scored after reading with each policy and budget\n"
    "              (reader::log_likelihood: no final cut, no instruction). Policies that score with an\n"
    "              instruction (citrus-shared, citrus-separate, snapkv-question, finch) do not apply; the default\n"
    "              list is full, streaming, h2o, tova, snapkv, roco, citrus-cse; --lengths defaults to 1000.\n"
    "              One document per length (--seeds 1). The task is `perplexity` (task_family `text`), its\n"
    "              score the continuation's perplexity exp(-mean ln p), lower is better\n"
    "  Score: toy tasks, the fraction answered exactly; RULER tasks, RULER's string_match_all (the fraction\n"
    "  of the gold strings in the answer, averaged), with `correct` counting answers holding all of them.\n"
    "  Exit status 1 when a run failed (its cell has no number) or an output file could not be written.\n";

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

template <class T>
std::vector<T> numbers(const std::string& text, const char* option) {
  std::vector<T> out;
  for (const auto& item : split(text)) out.push_back(pith::examples::parse_number<T>(item, option));
  if (out.empty()) throw pith::examples::usage_error(std::string(option) + " needs at least one value");
  return out;
}

// Resets VmHWM to the current resident size (Linux >= 4.0), so each run reports its own peak.
void reset_peak_memory() {
  std::ofstream clear("/proc/self/clear_refs");
  if (clear) clear << "5";
}

std::string clock_text(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  return text;
}

// Redraws at most every 100 ms (and always at the end): a run can take a few milliseconds.
void progress_bar(double done, double total, std::size_t runs_done, std::size_t runs, double seconds) {
  static double last_drawn = -1.0;
  if (runs_done < runs && last_drawn >= 0.0 && seconds - last_drawn < 0.1) return;
  last_drawn = seconds;
  constexpr int width = 30;
  const double fraction = total > 0 ? done / total : 1.0;
  const int filled = static_cast<int>(fraction * width);
  const double eta = done > 0 ? seconds * (total - done) / done : 0.0;
  std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %zu/%zu runs, elapsed %s, ETA %s ", filled,
               "##############################", width - filled, "", 100.0 * fraction, runs_done, runs,
               clock_text(seconds).c_str(), done > 0 ? clock_text(eta).c_str() : "?");
  std::fflush(stderr);
}

// The longest document a run may generate (tokens): 10^9 ids already take 4 GB.
constexpr std::size_t max_document_length = 1000000000;
// The most documents per cell.
constexpr std::size_t max_seeds = 1000000;
// The widest pooling window accepted.
constexpr std::size_t max_pool = 1001;

struct cell {
  std::size_t runs = 0, correct = 0;
  double score = 0.0;  // sum over the runs: 1/0 (toy: exact answer), RULER's string_match_all
  double tokens = 0.0, reading_seconds = 0.0, total_seconds = 0.0;
  std::size_t peak_bytes = 0, state_bytes = 0;

  void add(const cell& other) {
    runs += other.runs, correct += other.correct, score += other.score, tokens += other.tokens;
    reading_seconds += other.reading_seconds, total_seconds += other.total_seconds;
    peak_bytes = std::max(peak_bytes, other.peak_bytes), state_bytes = std::max(state_bytes, other.state_bytes);
  }
};

// A policy as swept: CItruS with pooled scores ("citrus-shared+pool7") is a variant of its own.
struct policy_spec {
  pith::policy_kind kind;
  std::size_t pool = 1;
  std::string label;
  bool head_adaptive = false;  // adakv(NAME)
};

policy_spec parse_policy_spec(const std::string& text, std::size_t default_pool) {
  using pith::policy_kind;
  const auto plus = text.find("+pool");
  const auto name = pith::parse_policy_label(text.substr(0, plus));  // "NAME" or "adakv(NAME)"
  policy_spec spec{name.kind, default_pool, {}, name.head_adaptive};
  const bool citrus = spec.kind == policy_kind::citrus_cse || spec.kind == policy_kind::citrus_shared ||
                      spec.kind == policy_kind::citrus_separate;
  if (plus != std::string::npos) {
    if (!citrus) throw pith::examples::usage_error(text + ": +poolK applies to the citrus-* policies only");
    spec.pool = pith::examples::parse_number<std::size_t>(text.substr(plus + 5), "--policies +pool");
  }
  if (!citrus) spec.pool = 1;
  if (spec.pool % 2 == 0) throw pith::examples::usage_error(text + ": the pooling window must be odd");
  if (spec.pool > max_pool)
    throw pith::examples::usage_error(text + ": the pooling window is out of range (1.." + std::to_string(max_pool) + ")");
  spec.label = pith::policy_label_name(spec.kind, spec.head_adaptive) + (spec.pool > 1 ? "+pool" + std::to_string(spec.pool) : "");
  return spec;
}

// A task as swept: a toy task (token ids of the toy vocabulary) or a RULER task (text in the model's tokens).
struct bench_task {
  std::string name;
  bool ruler = false;
  pith::toy_task toy = pith::toy_task::kv;
  pith::ruler_task ruler_kind = pith::ruler_task::niah_single_1;
  bool perplexity = false;  // --perplexity: a text's continuation scored after reading
  const char* family() const { return perplexity ? "text" : ruler ? "ruler" : "toy"; }
  bool has_depth() const { return ruler && pith::ruler_task_has_depth(ruler_kind); }
};

bench_task parse_bench_task(const std::string& name) {
  if (const auto found = pith::find_ruler_task(name)) return {name, true, pith::toy_task::kv, *found};
  for (const auto task : {pith::toy_task::passkey, pith::toy_task::kv, pith::toy_task::hop})
    if (name == pith::toy_task_name(task)) return {name, false, task, pith::ruler_task::niah_single_1};
  std::string ruler;
  for (const auto task : pith::all_ruler_tasks) ruler += std::string(ruler.empty() ? "" : ", ") + pith::ruler_task_name(task);
  throw pith::examples::usage_error("unknown task '" + name + "' (toy: passkey, kv, hop; RULER: " + ruler + ")");
}

std::string ruler_task_list() {
  std::string out;
  for (const auto task : pith::all_ruler_tasks) out += std::string(out.empty() ? "" : ",") + pith::ruler_task_name(task);
  return out;
}

// --depths: fractions in 0..1, or even:N (N evenly spaced from 0 to 1).
std::vector<double> parse_depths(const std::string& text) {
  using pith::examples::usage_error;
  std::vector<double> out;
  if (text.rfind("even:", 0) == 0) {
    const auto n = pith::examples::parse_number<std::size_t>(text.substr(5), "--depths even:N", 1, 1000);
    for (std::size_t i = 0; i < n; ++i) out.push_back(n == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(n - 1));
    return out;
  }
  for (const auto& item : split(text)) {
    const auto depth = pith::examples::parse_number<double>(item, "--depths");
    if (depth < 0.0 || depth > 1.0) throw usage_error("--depths: " + item + " is outside 0..1");
    if (std::find(out.begin(), out.end(), depth) == out.end()) out.push_back(depth);
  }
  if (out.empty()) throw usage_error("--depths needs at least one value (or even:N)");
  return out;
}

// The depth as it goes into a cell's key and the CSV: millionths (the generator's ppm), -1 for none.
std::int64_t depth_key(std::optional<double> depth) {
  return depth ? static_cast<std::int64_t>(std::floor(*depth * 1000000.0 + 0.5)) : -1;
}

std::string depth_text(std::int64_t key) {
  if (key < 0) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", static_cast<double>(key) / 1e6);
  return text;
}

// The id a tokenizer gives text it cannot spell, when it has one.
std::optional<std::int32_t> unknown_id(const pith::tokenizer& tok) {
  if (const auto* words = tok.as_words()) return words->unk_id();
  if (const auto* spm = tok.as_spm()) return spm->unk_id();
  return tok.token_id("<unk>");
}

std::size_t count_unknown(std::span<const std::int32_t> ids, std::optional<std::int32_t> unk) {
  return unk ? static_cast<std::size_t>(std::count(ids.begin(), ids.end(), *unk)) : 0;
}

// RULER documents are text: they need a tokenizer that spells any English text. A toy word
// vocabulary maps most of it to <unk>, and a run would measure nothing: refuse it, naming the counts.
void check_free_text(const pith::tokenizer& tok, const std::string& source) {
  const auto probe = pith::make_ruler_document_units(pith::ruler_task::niah_multikey_1, 8, 0, 4096);
  const auto ids = tok.encode(probe.document + probe.instruction(), false, false);
  const auto unknown = count_unknown(ids, unknown_id(tok));
  if (unknown > 0)
    throw pith::examples::usage_error(
        "the RULER tasks need a tokenizer that encodes free text, but " + source + " (" +
        std::to_string(tok.vocab_size()) + " tokens) maps " + std::to_string(unknown) + " of the " +
        std::to_string(ids.size()) + " tokens of a RULER document to <unk>" +
        (tok.as_words() ? " (a toy word vocabulary: the toy models can only run passkey, kv and hop)" : "") +
        "; use a model with a real tokenizer or give --tokenizer");
}

// (task, length, depth in ppm or -1, policy, budget, protocol, ratio in ppm or -1): ordered for the tables.
// A ratio cell's budget is floor(length (1 - r)) of the nominal length.
using cell_key = std::tuple<std::string, std::size_t, std::int64_t, std::string, std::size_t, std::string, std::int64_t>;

// --ratios: compression ratios in [0, 1), the spec's "Budgets and protocols".
std::vector<double> parse_ratios(const std::string& text) {
  std::vector<double> out;
  for (const auto& item : split(text)) {
    const auto ratio = pith::examples::parse_number<double>(item, "--ratios");
    if (!(ratio >= 0.0 && ratio < 1.0)) throw pith::examples::usage_error("--ratios: " + item + " is outside [0, 1)");
    if (std::find(out.begin(), out.end(), ratio) == out.end()) out.push_back(ratio);
  }
  if (out.empty()) throw pith::examples::usage_error("--ratios needs at least one value");
  return out;
}

std::int64_t ratio_key(std::optional<double> ratio) {
  return ratio ? static_cast<std::int64_t>(std::floor(*ratio * 1000000.0 + 0.5)) : -1;
}

// The different-question variant on the kv task: the instruction that names the next fact of the
// document (in document order) instead of the asked one. ids[fact_offsets[i] + 3] is fact i's name.
std::vector<std::int32_t> other_kv_instruction(const pith::toy_document& doc) {
  constexpr std::size_t name_at = 3, asked_at = 5;  // "the code of NAME is ...", "what is the code of NAME ?"
  std::vector<std::int32_t> out = doc.instruction;
  const auto& facts = doc.fact_offsets;
  for (std::size_t i = 0; i < facts.size(); ++i)
    if (doc.ids[facts[i] + name_at] == doc.instruction[asked_at]) {
      out[asked_at] = doc.ids[facts[(i + 1) % facts.size()] + name_at];
      return out;
    }
  throw pith::argument_error("pith-evict-bench: the kv document does not hold the asked fact");
}

int make_document(pith::examples::arguments& args, const std::string& file) {
  using namespace pith;
  using pith::examples::parse_number;
  const auto task = parse_bench_task(args.take("--task").value_or("kv"));
  const auto length = parse_number<std::size_t>(args.take("--length").value_or(task.ruler ? "4096" : "100000"), "--length",
                                                1, max_document_length);
  const auto seed = parse_number<std::uint64_t>(args.take("--seed").value_or("0"), "--seed");
  const auto facts_text = args.take("--facts");
  const auto depth_text_given = args.take("--depth");
  const auto chains_text = args.take("--vt-chains");
  const auto model_path = args.take("--model");
  const auto tokenizer_path = args.take("--tokenizer");
  if (!args.positional().empty()) throw pith::examples::usage_error("unexpected arguments");
  if (!task.ruler) {
    if (depth_text_given || chains_text || model_path || tokenizer_path)
      throw pith::examples::usage_error("--depth, --vt-chains, --model and --tokenizer apply to RULER tasks, not " +
                                        task.name);
    const auto facts = parse_number<std::size_t>(facts_text.value_or("8"), "--facts");
    const auto doc = make_toy_document(task.toy, length, seed, facts);
    std::ofstream out(file);
    if (!out) throw io_error(file + ": cannot write the document");
    out << toy_text(doc.ids) << '\n';
    out.close();
    if (!out) throw io_error(file + ": writing the document failed");
    std::printf("document: %s (%s task, %zu tokens with BOS, seed %llu, %zu facts)\n", file.c_str(), toy_task_name(task.toy),
                length, static_cast<unsigned long long>(seed), doc.fact_offsets.size());
    std::printf("instruction: %s\n", toy_text(doc.instruction).c_str());
    std::printf("expected answer: %s\n", toy_text(doc.answer).c_str());
    return 0;
  }
  if (facts_text) throw pith::examples::usage_error("--facts applies to kv and hop, not " + task.name);
  if (model_path && tokenizer_path) throw pith::examples::usage_error("give --model or --tokenizer, not both");
  ruler_options options;
  if (chains_text) {
    if (task.ruler_kind != ruler_task::vt) throw pith::examples::usage_error("--vt-chains applies to vt, not " + task.name);
    options.vt_chains = parse_number<std::size_t>(*chains_text, "--vt-chains", 1, 1000);
  }
  if (depth_text_given) {
    const auto depth = parse_number<double>(*depth_text_given, "--depth");
    if (depth < 0.0 || depth > 1.0) throw pith::examples::usage_error("--depth: " + *depth_text_given + " is outside 0..1");
    if (!task.has_depth()) throw pith::examples::usage_error("--depth: " + task.name + " has no needle depth");
    options.depth = depth;
  }
  std::optional<tokenizer> tok;
  std::string unit = "whitespace-separated words";
  if (tokenizer_path) {
    tok = load_tokenizer(*tokenizer_path);
    unit = "tokens of " + *tokenizer_path;
  } else if (model_path) {
    const auto weights = load_model(*model_path, {});
    tok = pith::examples::find_tokenizer(*model_path, std::nullopt, static_cast<std::int32_t>(weights.config.vocab_size));
    if (!tok) throw pith::examples::usage_error("no tokenizer found beside " + *model_path + "; give --tokenizer");
    unit = "tokens of " + *model_path + "'s tokenizer";
  }
  if (tok) check_free_text(*tok, tokenizer_path ? *tokenizer_path : *model_path);
  const ruler_token_counter count = tok ? ruler_token_counter([&](std::string_view text) {
    return tok->encode(text, true, false).size();
  })
                                        : ruler_token_counter(ruler_word_count);
  const auto doc = make_ruler_document(task.ruler_kind, length, seed, count, options);
  std::ofstream out(file, std::ios::binary);
  if (!out) throw io_error(file + ": cannot write the document");
  out << doc.document;
  out.close();
  if (!out) throw io_error(file + ": writing the document failed");
  std::string gold;
  for (const auto& g : doc.gold) gold += (gold.empty() ? "" : ", ") + g;
  std::printf("document: %s (%s task, %zu of at most %zu %s, seed %llu, %s, haystack of %zu units)\n", file.c_str(),
              task.name.c_str(), doc.tokens, length, unit.c_str(), static_cast<unsigned long long>(seed),
              doc.depth ? ("needle depth " + depth_text(depth_key(doc.depth))).c_str() : "no needle depth", doc.haystack);
  std::printf("instruction: %s\n", doc.instruction().c_str());
  std::printf("expected answer: %s\n", gold.c_str());
  return 0;
}

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  if (const auto file = args.take("--make-document")) return make_document(args, *file);

  const bool quick = args.flag("--quick");
  const auto model_path = args.take("--model");
  const auto suite = args.take("--suite");
  auto task_list_given = args.take("--tasks");
  if (suite && task_list_given) throw usage_error("give --tasks or --suite, not both");
  const auto perplexity_path = args.take("--perplexity");
  const auto ppl_tokens_text = args.take("--ppl-tokens");
  if (perplexity_path && (suite || task_list_given)) throw usage_error("--perplexity replaces --tasks and --suite");
  if (ppl_tokens_text && !perplexity_path) throw usage_error("--ppl-tokens applies to --perplexity");
  const auto ppl_tokens = parse_number<std::size_t>(ppl_tokens_text.value_or("256"), "--ppl-tokens", 1, 65536);
  std::string task_list = "passkey,kv";
  if (suite) {
    if (*suite == "ruler") task_list = ruler_task_list();
    else if (*suite == "toy") task_list = "passkey,kv,hop";
    else throw usage_error("--suite must be ruler or toy, not '" + *suite + "'");
  }
  task_list = task_list_given.value_or(task_list);
  std::vector<bench_task> tasks;
  if (perplexity_path) {
    bench_task text_task;
    text_task.name = "perplexity";
    text_task.perplexity = true;
    tasks.push_back(text_task);
  } else {
    for (const auto& name : split(task_list)) tasks.push_back(parse_bench_task(name));
  }
  const bool any_toy =
      std::any_of(tasks.begin(), tasks.end(), [](const bench_task& t) { return !t.ruler && !t.perplexity; });
  const bool any_ruler = std::any_of(tasks.begin(), tasks.end(), [](const bench_task& t) { return t.ruler; });
  const bool ruler_only = any_ruler && !any_toy;

  std::string policy_list = "full,streaming,h2o,tova,snapkv,roco,citrus-cse,citrus-shared,citrus-separate";
  // RULER alone: kvpress's leaderboard setting, 4K tokens at compression ratios 0.875, 0.75, 0.5 and 0.25.
  std::string budget_list = ruler_only ? "512,1024,2048,3072" : "16,32,64,128,256";
  std::string length_list = ruler_only ? "4096" : "1000,8000", seed_count = "10";
  if (quick) {
    policy_list = "streaming,h2o,tova,snapkv,roco,citrus-cse,citrus-shared,citrus-separate,citrus-shared+pool7";
    budget_list = "16,64,256";
    length_list = ruler_only ? "4096" : "8000";
    seed_count = "10";
  }
  if (perplexity_path) {
    policy_list = "full,streaming,h2o,tova,snapkv,roco,citrus-cse";
    length_list = "1000";
    seed_count = "1";
  }
  policy_list = args.take("--policies").value_or(policy_list);
  if (policy_list == "all") {
    policy_list.clear();
    for (const auto kind : builtin_policies) policy_list += std::string(policy_list.empty() ? "" : ",") + policy_name(kind);
  }
  // The spec's "Budgets and protocols": --ratios beside (or instead of) --budgets, either protocol.
  const auto budgets_text = args.take("--budgets");
  const auto ratios_text = args.take("--ratios");
  const std::vector<double> ratios = ratios_text ? parse_ratios(*ratios_text) : std::vector<double>{};
  const auto budgets = budgets_text || !ratios_text ? numbers<std::size_t>(budgets_text.value_or(budget_list), "--budgets")
                                                    : std::vector<std::size_t>{};
  std::vector<reading_protocol> protocols;
  for (const auto& name : split(args.take("--protocol").value_or("chunked"))) {
    if (name != "chunked" && name != "oneshot")
      throw usage_error("--protocol must be chunked, oneshot or both (chunked,oneshot), not '" + name + "'");
    if (std::find(protocols.begin(), protocols.end(), parse_protocol(name)) == protocols.end())
      protocols.push_back(parse_protocol(name));
  }
  if (protocols.empty()) throw usage_error("--protocol needs chunked, oneshot or both");
  const bool any_oneshot = std::find(protocols.begin(), protocols.end(), reading_protocol::oneshot) != protocols.end();
  const bool question_in_cut = args.flag("--question-in-cut");
  if (question_in_cut && !any_oneshot) throw usage_error("--question-in-cut applies to --protocol oneshot");
  const bool different_question = args.flag("--different-question");
  const auto lengths = numbers<std::size_t>(args.take("--lengths").value_or(length_list), "--lengths");
  if (std::find(budgets.begin(), budgets.end(), std::size_t{0}) != budgets.end())
    throw usage_error("--budgets: a budget of 0 keeps no document state; use at least 1");
  const auto seeds = parse_number<std::size_t>(args.take("--seeds").value_or(seed_count), "--seeds", 0, max_seeds);
  const auto seed_base = parse_number<std::uint64_t>(args.take("--seed-base").value_or("0"), "--seed-base");
  if (seeds > std::numeric_limits<std::uint64_t>::max() - seed_base)
    throw usage_error("--seed-base " + std::to_string(seed_base) + " + --seeds " + std::to_string(seeds) + " overflows");
  const auto facts = parse_number<std::size_t>(args.take("--facts").value_or("8"), "--facts");
  const auto chunk = parse_number<std::size_t>(args.take("--chunk").value_or("64"), "--chunk");
  if (chunk == 0) throw usage_error("--chunk: 0 reads nothing; use at least 1");
  const auto full_max = parse_number<std::size_t>(args.take("--full-max-length").value_or("4096"), "--full-max-length");
  const auto citrus_pool = parse_number<std::size_t>(args.take("--citrus-pool").value_or("1"), "--citrus-pool", 1, max_pool);
  const auto adakv_alpha = parse_number<double>(args.take("--adakv-alpha").value_or("0.2"), "--adakv-alpha");
  if (!(adakv_alpha >= 0.0 && adakv_alpha <= 1.0))
    throw usage_error("--adakv-alpha: " + std::to_string(adakv_alpha) + " is outside [0, 1]");
  if (citrus_pool % 2 == 0) throw usage_error("--citrus-pool must be odd (a window centred on the slot)");
  const auto depths_text = args.take("--depths");
  const auto tokenizer_path = args.take("--tokenizer");
  const auto answer_tokens_text = args.take("--answer-tokens");
  const auto vt_chains = parse_number<std::size_t>(args.take("--vt-chains").value_or("1"), "--vt-chains", 1, 1000);
  const auto pool_kernel = parse_number<std::size_t>(args.take("--pool-kernel").value_or("7"), "--pool-kernel", 1, max_pool);
  if (pool_kernel % 2 == 0) throw usage_error("--pool-kernel must be odd (a window centred on the slot)");
  const std::string pool_mode_name = args.take("--pool-mode").value_or("avg");
  if (pool_mode_name != "avg" && pool_mode_name != "max")
    throw usage_error("--pool-mode must be avg or max, not " + pool_mode_name);
  const pool_mode snapkv_pool = parse_pool_mode(pool_mode_name);
  const auto csv_path = args.take("--csv");
  const auto json_path = args.take("--json");
  const auto threads = args.take("--threads");
  const auto load = parse_quantize(args.take("--quantize"));
  const dtype kv_type = parse_kv_type_option(args.take("--kv-type"));
  const std::string positions_name = args.take("--positions").value_or("reindexed");
  if (positions_name != "reindexed" && positions_name != "original")
    throw usage_error("--positions must be reindexed or original, not " + positions_name);
  const position_mode positions =
      positions_name == "original" ? position_mode::original : position_mode::reindexed;
  const auto sinks = parse_number<std::size_t>(args.take("--sinks").value_or("4"), "--sinks", 0, std::size_t{1} << 20);
  if (!args.positional().empty()) throw usage_error("unexpected argument " + args.positional()[0]);
  if (!model_path) throw usage_error("--model is required");
  if (different_question &&
      (std::any_of(tasks.begin(), tasks.end(), [](const bench_task& t) { return t.ruler || t.toy != toy_task::kv; }) || facts < 2))
    throw usage_error("--different-question runs the kv task alone, with at least 2 --facts (it asks about another fact)");
  // The depths: every value for the tasks with a needle depth; the others run once, without one.
  std::vector<std::optional<double>> depths{std::nullopt};
  if (depths_text) {
    depths.clear();
    for (const double depth : parse_depths(*depths_text)) depths.push_back(depth);
    if (std::none_of(tasks.begin(), tasks.end(), [](const bench_task& t) { return t.has_depth(); }))
      throw usage_error("--depths: none of the tasks has a needle depth (niah_single_*, niah_multikey_*)");
  }
  const std::optional<std::size_t> answer_tokens =
      answer_tokens_text ? std::optional(parse_number<std::size_t>(*answer_tokens_text, "--answer-tokens", 1, 65536))
                         : std::nullopt;
  if (answer_tokens && !any_ruler) throw usage_error("--answer-tokens applies to RULER tasks");
  if (tokenizer_path && !any_ruler && !perplexity_path)
    throw usage_error("--tokenizer applies to RULER tasks and --perplexity (the toy tasks are token ids)");
  if (perplexity_path && seeds != 1) throw usage_error("--seeds: --perplexity reads one text, one document per length");
  if (vt_chains != 1 && std::none_of(tasks.begin(), tasks.end(), [](const bench_task& t) {
        return t.ruler && t.ruler_kind == ruler_task::vt;
      }))
    throw usage_error("--vt-chains applies to the vt task, which is not in the sweep");
  // One thread by default: the toy models' matrices (hidden 64) are too small to split across cores.
  set_threads_option(threads.value_or("1"));

  std::vector<policy_spec> policies;
  for (const auto& name : split(policy_list)) policies.push_back(parse_policy_spec(name, citrus_pool));
  if (perplexity_path)
    for (const auto& policy : policies)
      if (traits_of(policy.kind, 32).instruction_scores)
        throw usage_error("--perplexity: policy " + policy.label +
                          " scores with an instruction, and a perplexity run reads the text without one");
  if (policies.empty() || tasks.empty() || seeds == 0) throw usage_error("nothing to run");

  const auto weights = load_model(*model_path, load);
  if (any_toy && weights.config.vocab_size != toy_vocabulary().size())
    throw usage_error(*model_path + ": vocabulary of " + std::to_string(weights.config.vocab_size) +
                      " tokens; the toy tasks need a toy model (" + std::to_string(toy_vocabulary().size()) + " tokens)");
  std::optional<tokenizer> tok;
  if (any_ruler) {
    tok = find_tokenizer(*model_path, tokenizer_path, static_cast<std::int32_t>(weights.config.vocab_size));
    if (!tok) throw usage_error("the RULER tasks need the model's tokenizer: none found beside " + *model_path +
                                "; give --tokenizer");
    if (static_cast<std::size_t>(tok->vocab_size()) > weights.config.vocab_size)
      throw usage_error("the tokenizer has " + std::to_string(tok->vocab_size()) + " tokens, more than the model's " +
                        std::to_string(weights.config.vocab_size) + ": it is not this model's tokenizer");
    check_free_text(*tok, tokenizer_path ? *tokenizer_path : *model_path + "'s tokenizer");
  }
  // --perplexity: the text in the model's tokens, BOS first; every length must leave the continuation.
  std::vector<std::int32_t> text_ids;
  if (perplexity_path) {
    tok = find_tokenizer(*model_path, tokenizer_path, static_cast<std::int32_t>(weights.config.vocab_size));
    if (!tok) throw usage_error("--perplexity needs the model's tokenizer: none found beside " + *model_path +
                                "; give --tokenizer");
    std::ifstream in(*perplexity_path, std::ios::binary);
    if (!in) throw usage_error("--perplexity: cannot read " + *perplexity_path);
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (!in.good() && !in.eof()) throw io_error(*perplexity_path + ": reading failed");
    text_ids = tok->encode(text, true, false);
    for (const std::int32_t id : text_ids)
      if (id < 0 || static_cast<std::size_t>(id) >= weights.config.vocab_size)
        throw usage_error("--perplexity: the tokenizer gives id " + std::to_string(id) + ", outside the model's " +
                          std::to_string(weights.config.vocab_size) + " tokens: it is not this model's tokenizer");
    for (const auto length : lengths) {
      if (length == 0) throw usage_error("--lengths: a document of 0 tokens has nothing to read");
      if (length > text_ids.size() || text_ids.size() - length < ppl_tokens)
        throw usage_error("--perplexity: " + *perplexity_path + " holds " + std::to_string(text_ids.size()) +
                          " tokens, and --lengths " + std::to_string(length) + " leaves fewer than --ppl-tokens " +
                          std::to_string(ppl_tokens) + " after its document");
    }
    if (const auto unknown = count_unknown(text_ids, unknown_id(*tok)))
      std::fprintf(stderr, "pith-evict-bench: note: the tokenizer spells %zu of the text's %zu tokens as <unk>\n",
                   unknown, text_ids.size());
  }
  check_kv_type(kv_type, weights.config.head_dim, "--kv-type");
  // Budgets, chunks and lengths are bounded before they size anything (their sums must not wrap):
  // budget and chunk by the model's context, lengths by what a document in memory may hold.
  const std::size_t context = weights.config.max_position_embeddings;
  for (const auto budget : budgets)
    if (budget > context)
      throw usage_error("--budgets: " + std::to_string(budget) + " is out of range (1.." + std::to_string(context) +
                        ", the model's context)");
  if (chunk > context)
    throw usage_error("--chunk: " + std::to_string(chunk) + " is out of range (1.." + std::to_string(context) +
                      ", the model's context)");
  for (const auto length : lengths)
    if (length > max_document_length)
      throw usage_error("--lengths: " + std::to_string(length) + " is out of range (at most " +
                        std::to_string(max_document_length) + " tokens)");

  // The plan: every (task, length, depth, seed) document, every policy, every budget (full: once).
  struct planned {
    const bench_task* task;
    std::size_t length;
    std::optional<double> depth;
    std::uint64_t seed;
    const policy_spec* policy;
    std::size_t budget;  // a ratio's: floor(length (1 - r)) of the nominal length
    reading_protocol protocol;
    std::optional<double> ratio;
  };
  std::vector<planned> plan;
  double total_tokens = 0.0;
  std::size_t skipped_full = 0;
  for (const auto& task : tasks)
    for (const auto length : lengths)
      for (const auto& depth : task.has_depth() ? depths : std::vector<std::optional<double>>{std::nullopt})
        for (std::size_t s = 0; s < seeds; ++s)
          for (const auto protocol : protocols)
            for (const auto& policy : policies) {
              if (policy.kind == policy_kind::full) {
                if (length > full_max) {
                  ++skipped_full;
                  continue;
                }
                plan.push_back({&task, length, depth, seed_base + s, &policy, length, protocol, std::nullopt});
                total_tokens += static_cast<double>(length);
                continue;
              }
              for (const auto budget : budgets) {
                plan.push_back({&task, length, depth, seed_base + s, &policy, budget, protocol, std::nullopt});
                total_tokens += static_cast<double>(length);
              }
              for (const double ratio : ratios) {
                plan.push_back({&task, length, depth, seed_base + s, &policy, ratio_budget(length, ratio), protocol, ratio});
                total_tokens += static_cast<double>(length);
              }
            }
  std::fprintf(stderr, "pith-evict-bench: %s, %zu runs (%.1f M tokens), chunk %zu, KV cache %s, %zu thread(s)%s%s\n",
               model_path->c_str(), plan.size(), total_tokens / 1e6, chunk, kv_type_name(kv_type).c_str(), num_threads(),
               skipped_full ? ", full cache skipped above --full-max-length" : "",
               any_ruler ? (", RULER documents in " + (tokenizer_path ? *tokenizer_path : "the model's tokenizer") + " (" +
                            std::to_string(tok->vocab_size()) + " tokens)")
                               .c_str()
                         : "");

  // One document: the ids read, the instruction, and what a right answer is.
  struct bench_document {
    std::vector<std::int32_t> ids, instruction;
    std::vector<std::int32_t> reading;  // --different-question: the instruction read with
    std::vector<std::int32_t> answer;  // toy: the exact answer; --perplexity: the continuation scored
    std::vector<std::string> gold;     // RULER: the strings the answer must hold
    std::size_t answer_tokens = 0;
    std::optional<double> depth;       // the needle's depth (RULER tasks with one)
  };
  const ruler_token_counter count_tokens = [&](std::string_view text) { return tok->encode(text, true, false).size(); };
  const auto unk = tok ? unknown_id(*tok) : std::nullopt;
  bool warned_unknown = false;
  const auto make = [&](const planned& p) {
    bench_document doc;
    if (p.task->perplexity) {
      const auto ids = std::span<const std::int32_t>(text_ids);
      doc.ids.assign(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(p.length));
      const auto continuation = ids.subspan(p.length, ppl_tokens);
      doc.answer.assign(continuation.begin(), continuation.end());
      doc.answer_tokens = ppl_tokens;
      return doc;
    }
    if (!p.task->ruler) {
      auto toy = make_toy_document(p.task->toy, p.length, p.seed, facts);
      if (different_question) doc.reading = other_kv_instruction(toy);
      doc.ids = std::move(toy.ids);
      doc.instruction = std::move(toy.instruction);
      doc.answer = std::move(toy.answer);
      doc.answer_tokens = doc.answer.size();
      return doc;
    }
    ruler_options options;
    options.depth = p.depth;
    options.vt_chains = vt_chains;
    const auto text = make_ruler_document(p.task->ruler_kind, p.length, p.seed, count_tokens, options);
    doc.ids = tok->encode(text.document, true, false);
    doc.instruction = tok->encode(text.instruction(), false, false);
    doc.gold = text.gold;
    doc.depth = text.depth;
    doc.answer_tokens = answer_tokens.value_or(ruler_answer_tokens(p.task->ruler_kind));
    if (!warned_unknown && count_unknown(doc.ids, unk) + count_unknown(doc.instruction, unk) > 0) {
      warned_unknown = true;
      std::fprintf(stderr, "\npith-evict-bench: warning: the %s document (seed %llu) holds <unk> tokens\n",
                   p.task->name.c_str(), static_cast<unsigned long long>(p.seed));
    }
    return doc;
  };

  std::map<cell_key, cell> cells;
  std::map<std::string, std::size_t> errors;
  std::size_t failed_runs = 0;
  const auto start = std::chrono::steady_clock::now();
  double done_tokens = 0.0;
  std::size_t runs_done = 0;
  bench_document doc;
  std::tuple<const bench_task*, std::size_t, std::int64_t, std::uint64_t> current{nullptr, 0, -1, 0};
  progress_bar(0.0, total_tokens, 0, plan.size(), 0.0);
  for (const auto& p : plan) {
    const std::tuple<const bench_task*, std::size_t, std::int64_t, std::uint64_t> wanted{p.task, p.length,
                                                                                         depth_key(p.depth), p.seed};
    if (runs_done == 0 || current != wanted) {
      doc = make(p);
      current = wanted;
    }
    reader_options options;
    options.policy = p.policy->kind;
    options.budget = p.budget;
    options.chunk_size = chunk;
    options.citrus_pool = p.policy->pool;
    options.head_adaptive = p.policy->head_adaptive;
    options.adakv_alpha = adakv_alpha;
    options.snapkv_kernel = pool_kernel;
    options.snapkv_pool = snapkv_pool;
    options.kv_type = kv_type;
    options.positions = positions;
    options.sink = sinks;
    options.max_answer_tokens = doc.answer_tokens + 1;
    if (p.policy->kind == policy_kind::full) options.max_context = doc.ids.size() + doc.instruction.size() + doc.answer_tokens + 2;
    options.protocol = p.protocol;
    const bool oneshot = p.protocol == reading_protocol::oneshot;
    options.question_in_cut = oneshot && question_in_cut;
    if (p.ratio && oneshot) options.ratio = p.ratio;
    if (p.ratio && !oneshot) options.budget = ratio_budget(doc.ids.size(), *p.ratio);  // this document's n
    // Seeded depths differ by document: the cell of a task with a needle depth and no --depths has none.
    const cell_key key{p.task->name, p.length,       depth_key(p.depth), p.policy->label,
                       p.budget,     protocol_name(p.protocol), ratio_key(p.ratio)};
    try {
      reset_peak_memory();
      const auto t0 = std::chrono::steady_clock::now();
      reader r(weights, options, different_question ? doc.reading : doc.instruction, doc.instruction);
      r.feed(doc.ids);
      std::vector<std::int32_t> answer;
      double score = 0.0;
      if (p.task->perplexity) {
        score = r.log_likelihood(doc.answer).perplexity();
      } else {
        sampler greedy;
        answer = r.answer(doc.answer_tokens, greedy, {}, weights.config.eos_token_id);
      }
      const double seconds = seconds_since(t0);
      bool exact = false;
      if (p.task->perplexity) {
        // no answer: the score is the continuation's perplexity
      } else if (!p.task->ruler) {
        exact = answer == doc.answer;
        score = exact ? 1.0 : 0.0;
      } else {
        std::string text;
        std::int32_t previous = doc.instruction.empty() ? doc.ids.back() : doc.instruction.back();
        for (const std::int32_t token : answer) {
          if (token == weights.config.eos_token_id) break;
          text += tok->decode(previous, token);
          previous = token;
        }
        score = string_match_all(text, doc.gold);
        exact = score == 1.0;
      }
      cell& c = cells[key];
      ++c.runs;
      c.correct += exact ? 1 : 0;
      c.score += score;
      c.tokens += static_cast<double>(r.stats().tokens_read);
      c.reading_seconds += r.stats().reading_seconds;
      c.total_seconds += seconds;
      c.peak_bytes = std::max(c.peak_bytes, peak_resident_bytes());
      c.state_bytes = std::max(c.state_bytes, r.state_bytes());
    } catch (const pith::argument_error& e) {
      ++failed_runs;
      if (errors[e.what()]++ == 0)
        std::fprintf(stderr, "\n%s %s %s k=%zu: %s (cell skipped)\n", p.policy->label.c_str(), protocol_name(p.protocol),
                     p.task->name.c_str(), p.budget, e.what());
    }
    done_tokens += static_cast<double>(p.length);
    ++runs_done;
    progress_bar(done_tokens, total_tokens, runs_done, plan.size(), seconds_since(start));
  }
  std::fprintf(stderr, "\n");

  // Summary tables: one per task and length (every depth together), policies (per protocol) x budgets
  // and ratios.
  const auto summed = [&](const std::string& task, std::size_t length, const std::string& policy, std::size_t budget,
                          const std::string& protocol, std::int64_t ratio) -> std::optional<cell> {
    std::optional<cell> out;
    for (const auto& [key, c] : cells)
      if (std::get<0>(key) == task && std::get<1>(key) == length && std::get<3>(key) == policy &&
          std::get<4>(key) == budget && std::get<5>(key) == protocol && std::get<6>(key) == ratio) {
        if (!out) out = cell{};
        out->add(c);
      }
    return out;
  };
  for (const auto& task : tasks)
    for (const auto length : lengths) {
      if (task.perplexity)
        std::printf("\nperplexity of the %zu tokens after the first %zu of %s (lower is better; full: the whole cache)\n",
                    ppl_tokens, length, perplexity_path->c_str());
      else if (task.ruler)
        std::printf("\n%s, %zu tokens: RULER score, string_match_all (%zu documents per cell%s)\n", task.name.c_str(), length,
                    seeds * (task.has_depth() ? depths.size() : 1), task.has_depth() && depths_text ? ", every depth" : "");
      else
        std::printf("\n%s, %zu tokens: fraction answered exactly (%zu documents per cell)\n", task.name.c_str(), length, seeds);
      if (question_in_cut || different_question)
        std::printf("(%s%s%s)\n", question_in_cut ? "oneshot: the question scores the cut" : "",
                    question_in_cut && different_question ? "; " : "",
                    different_question ? "read with an instruction about another fact than the question asked" : "");
      std::printf("%-32s", "policy \\ budget");
      // Perplexities with three decimals; the tasks' fractions with two.
      const auto print_value = [&](double value) {
        if (task.perplexity) std::printf(" %6.3f", value);
        else std::printf(" %6.2f", value);
      };
      for (const auto budget : budgets) std::printf(" %6zu", budget);
      for (const double ratio : ratios) std::printf(" r=%-4g", ratio);
      std::printf("   tok/s\n");
      for (const auto protocol : protocols)
        for (const auto& policy : policies) {
          const std::string label =
              policy.label + (protocols.size() > 1 || any_oneshot ? std::string(" [") + protocol_name(protocol) + "]" : "");
          std::printf("%-32s", label.c_str());
          double tokens = 0.0, seconds = 0.0;
          const auto column = [&](const std::optional<cell>& found) {
            if (!found) {
              std::printf(" %6s", "-");
              return;
            }
            print_value(found->score / static_cast<double>(found->runs));
          };
          if (policy.kind == policy_kind::full) {
            const auto found = summed(task.name, length, "full", length, protocol_name(protocol), -1);
            for (std::size_t i = 0; i < budgets.size() + ratios.size(); ++i) column(found);
            if (found) tokens = found->tokens, seconds = found->reading_seconds;
          } else {
            const auto add = [&](const std::optional<cell>& found) {
              column(found);
              if (found) tokens += found->tokens, seconds += found->reading_seconds;
            };
            for (const auto budget : budgets)
              add(summed(task.name, length, policy.label, budget, protocol_name(protocol), -1));
            for (const double ratio : ratios)
              add(summed(task.name, length, policy.label, ratio_budget(length, ratio), protocol_name(protocol),
                         ratio_key(ratio)));
          }
          std::printf("   %.0f\n", seconds > 0 ? tokens / seconds : 0.0);
        }
    }

  const auto row_values = [](const cell& c) {
    const double score = c.score / static_cast<double>(c.runs);
    return std::tuple{score, c.reading_seconds > 0 ? c.tokens / c.reading_seconds : 0.0,
                      static_cast<double>(c.peak_bytes) / (1 << 20), static_cast<double>(c.state_bytes) / (1 << 20),
                      c.total_seconds / static_cast<double>(c.runs)};
  };
  // same / different (--different-question), "+seen" on oneshot rows whose cut the question scored.
  const auto question_text = [&](bool oneshot) {
    return std::string(different_question ? "different" : "same") + (oneshot && question_in_cut ? "+seen" : "");
  };
  const auto family_of = [&](const std::string& name) {
    for (const auto& task : tasks)
      if (task.name == name) return task.family();
    return "?";
  };
  const std::string model_name = std::filesystem::path(*model_path).filename().string().empty()
                                     ? std::filesystem::path(*model_path).parent_path().filename().string()
                                     : std::filesystem::path(*model_path).filename().string();
  if (csv_path) {
    std::ofstream out(*csv_path);
    if (!out) throw io_error(*csv_path + ": cannot write");
    out << "model,task_family,task,length,depth,policy,protocol,budget,ratio,question,chunk,documents,correct,score,"
           "tokens_per_s,peak_memory_mib,state_mib,seconds_per_document,positions,sinks\n";
    for (const auto& [key, c] : cells) {
      const auto [score, speed, peak, state, seconds] = row_values(c);
      const bool oneshot = std::get<5>(key) == "oneshot";
      char line[768];
      std::snprintf(line, sizeof line, "%s,%s,%s,%zu,%s,%s,%s,%zu,%s,%s,%s,%zu,%zu,%.4f,%.0f,%.1f,%.3f,%.3f,%s,%zu\n",
                    model_name.c_str(), family_of(std::get<0>(key)), std::get<0>(key).c_str(), std::get<1>(key),
                    depth_text(std::get<2>(key)).c_str(), std::get<3>(key).c_str(), std::get<5>(key).c_str(),
                    std::get<4>(key), depth_text(std::get<6>(key)).c_str(), question_text(oneshot).c_str(),
                    oneshot ? "" : std::to_string(chunk).c_str(), c.runs, c.correct, score, speed, peak, state, seconds,
                    positions_name.c_str(), sinks);
      out << line;
    }
    out.close();
    if (!out) throw io_error(*csv_path + ": writing failed");
    std::fprintf(stderr, "wrote %s\n", csv_path->c_str());
  }
  if (json_path) {
    std::vector<std::string> protocol_names;
    for (const auto protocol : protocols) protocol_names.emplace_back(protocol_name(protocol));
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& [key, c] : cells) {
      const auto [score, speed, peak, state, seconds] = row_values(c);
      const nlohmann::json depth =
          std::get<2>(key) < 0 ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(std::get<2>(key)) / 1e6);
      const nlohmann::json ratio =
          std::get<6>(key) < 0 ? nlohmann::json(nullptr) : nlohmann::json(static_cast<double>(std::get<6>(key)) / 1e6);
      rows.push_back({{"task_family", family_of(std::get<0>(key))}, {"task", std::get<0>(key)}, {"length", std::get<1>(key)},
                      {"depth", depth}, {"policy", std::get<3>(key)}, {"protocol", std::get<5>(key)},
                      {"budget", std::get<4>(key)}, {"ratio", ratio},
                      {"question", question_text(std::get<5>(key) == "oneshot")}, {"documents", c.runs},
                      {"correct", c.correct}, {"score", score}, {"tokens_per_s", std::round(speed)},
                      {"peak_memory_mib", std::round(peak * 10) / 10}, {"state_mib", std::round(state * 1000) / 1000},
                      {"seconds_per_document", seconds}});
    }
    nlohmann::json root{{"model", model_name},       {"model_path", *model_path}, {"chunk", chunk},
                        {"facts", facts},            {"seeds", {seed_base, seed_base + seeds - 1}},
                        {"threads", num_threads()},  {"full_max_length", full_max},
                        {"kv_type", kv_type_name(kv_type)}, {"positions", positions_name}, {"sinks", sinks},
                        {"pool_kernel", pool_kernel},  {"pool_mode", pool_mode_name}, {"adakv_alpha", adakv_alpha},
                        {"protocols", protocol_names}, {"ratios", ratios},
                        {"question_in_cut", question_in_cut}, {"different_question", different_question},
                        {"note", "budget of the full policy = the document length (it keeps every state); a ratio row's "
                                 "budget: floor(length (1 - ratio)), each document keeping floor(n (1 - ratio)) of its n "
                                 "tokens; question: same or different (the instruction read with), oneshot rows add "
                                 "+seen when the question scored the cut; score: toy "
                                 "tasks the fraction answered exactly, RULER tasks string_match_all (correct: answers "
                                 "holding every gold string), task perplexity the perplexity of the continuation "
                                 "(lower is better); depth null: none, or drawn per document"},
                        {"rows", rows}};
    if (perplexity_path) {
      root["perplexity_file"] = *perplexity_path;
      root["ppl_tokens"] = ppl_tokens;
    }
    if (any_ruler) {
      root["tokenizer"] = tokenizer_path.value_or("beside the model");
      root["vt_chains"] = vt_chains;
    }
    std::ofstream out(*json_path);
    if (!out) throw io_error(*json_path + ": cannot write");
    out << root.dump(1) << '\n';
    out.close();
    if (!out) throw io_error(*json_path + ": writing failed");
    std::fprintf(stderr, "wrote %s\n", json_path->c_str());
  }
  std::fprintf(stderr, "total %s\n", clock_text(seconds_since(start)).c_str());
  // A cell that failed has no number: the sweep did not do its job.
  if (failed_runs != 0) {
    std::fprintf(stderr, "pith-evict-bench: %zu of %zu runs failed%s\n", failed_runs, plan.size(),
                 failed_runs == plan.size() ? " (every run)" : "");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-evict-bench", usage, [&] { return run(argc, argv); }, argc, argv);
}
