// SPDX-License-Identifier: MIT
// pith-evict-bench: accuracy, speed and memory of the eviction policies on generated long documents
// (passkey, kv, hop; include/pith/runtime/toy_tasks.hpp), swept over budgets, lengths, tasks and seeds.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include <pith/core/memory.hpp>
#include <pith/runtime/reader.hpp>
#include <pith/runtime/toy_tasks.hpp>

#include "common.hpp"
#include "kv_type_option.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-evict-bench --model DIR [--policies LIST] [--budgets LIST] [--lengths LIST] [--tasks LIST]\n"
    "                        [--seeds N] [--seed-base S] [--facts F] [--chunk L] [--csv FILE] [--json FILE]\n"
    "                        [--full-max-length N] [--citrus-pool K] [--pool-kernel K] [--pool-mode avg|max]\n"
    "                        [--threads N] [--quick] [--quantize TYPE] [--kv-type f32|f16|bf16|q8_0]\n"
    "       pith-evict-bench --make-document FILE [--task kv] [--length N] [--seed S] [--facts F]\n"
    "  --policies  comma-separated: full, streaming, h2o, tova, snapkv, roco, citrus-cse, citrus-shared,\n"
    "              citrus-separate (the default: these nine), random, knorm, observed-attention, chunkkv,\n"
    "              snapkv-question, keydiff, pyramidkv, or all; a citrus-* name with +poolK (K odd), e.g.\n"
    "              citrus-shared+pool7, pools its scores over K neighbouring slots (docs/eviction.md)\n"
    "  --budgets   k values (default 16,32,64,128,256); --lengths in tokens, BOS included (default 1000,8000)\n"
    "  --tasks     passkey, kv, hop (default passkey,kv); --seeds documents per cell (default 10, seeds S..S+N-1)\n"
    "  --facts     kv/hop facts per document (default 8); --chunk L (default 64)\n"
    "  --full-max-length  the full cache runs only up to this length (default 4096: its cost grows as n^2)\n"
    "  --citrus-pool K  the pooling window of the citrus-* names given without +poolK (default 1: off)\n"
    "  --pool-kernel K  the SnapKV family's pooling window (snapkv, snapkv-question, chunkkv, pyramidkv), odd\n"
    "              (default 7); --pool-mode avg (default: zero padding, divided by K) or max\n"
    "  --threads   threads per document, 1..1024 (default 1: the toy models are too small to split)\n"
    "  --quick     a sweep of about a minute: the 8 evicting policies and citrus-shared+pool7\n"
    "              x budgets 16,64,256 x 8000 tokens\n"
    "              x passkey,kv x 10 seeds\n"
    "  --quantize  quantizes the model's weight matrices at load: q8_0, q4_0, q4_k, q6_k, ... or q4_k_m / q5_k_m\n"
    "  --kv-type   what the KV caches store keys and values as: f32 (default, exact), f16, bf16 or q8_0\n"
    "              (q8_0: the model's head size must be a multiple of 32)\n"
    "  --make-document writes the document's text to FILE and prints its instruction and expected answer\n"
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
  double tokens = 0.0, reading_seconds = 0.0, total_seconds = 0.0;
  std::size_t peak_bytes = 0, state_bytes = 0;
};

// A policy as swept: CItruS with pooled scores ("citrus-shared+pool7") is a variant of its own.
struct policy_spec {
  pith::policy_kind kind;
  std::size_t pool = 1;
  std::string label;
};

policy_spec parse_policy_spec(const std::string& text, std::size_t default_pool) {
  using pith::policy_kind;
  const auto plus = text.find("+pool");
  policy_spec spec{pith::parse_policy(text.substr(0, plus)), default_pool, {}};
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
  spec.label = std::string(pith::policy_name(spec.kind)) + (spec.pool > 1 ? "+pool" + std::to_string(spec.pool) : "");
  return spec;
}

// (task, length, policy, budget): ordered for the tables.
using cell_key = std::tuple<std::string, std::size_t, std::string, std::size_t>;

int make_document(pith::examples::arguments& args, const std::string& file) {
  using namespace pith;
  using pith::examples::parse_number;
  const auto task = parse_toy_task(args.take("--task").value_or("kv"));
  const auto length = parse_number<std::size_t>(args.take("--length").value_or("100000"), "--length", 1, max_document_length);
  const auto seed = parse_number<std::uint64_t>(args.take("--seed").value_or("0"), "--seed");
  const auto facts = parse_number<std::size_t>(args.take("--facts").value_or("8"), "--facts");
  if (!args.positional().empty()) throw pith::examples::usage_error("unexpected arguments");
  const auto doc = make_toy_document(task, length, seed, facts);
  std::ofstream out(file);
  if (!out) throw io_error(file + ": cannot write the document");
  out << toy_text(doc.ids) << '\n';
  out.close();
  if (!out) throw io_error(file + ": writing the document failed");
  std::printf("document: %s (%s task, %zu tokens with BOS, seed %llu, %zu facts)\n", file.c_str(), toy_task_name(task),
              length, static_cast<unsigned long long>(seed), doc.fact_offsets.size());
  std::printf("instruction: %s\n", toy_text(doc.instruction).c_str());
  std::printf("expected answer: %s\n", toy_text(doc.answer).c_str());
  return 0;
}

int run(int argc, char** argv) {
  using namespace pith;
  using namespace pith::examples;
  arguments args(argc, argv);
  if (const auto file = args.take("--make-document")) return make_document(args, *file);

  const bool quick = args.flag("--quick");
  const auto model_path = args.take("--model");
  std::string policy_list = "full,streaming,h2o,tova,snapkv,roco,citrus-cse,citrus-shared,citrus-separate";
  std::string budget_list = "16,32,64,128,256", length_list = "1000,8000", task_list = "passkey,kv", seed_count = "10";
  if (quick) {
    policy_list = "streaming,h2o,tova,snapkv,roco,citrus-cse,citrus-shared,citrus-separate,citrus-shared+pool7";
    budget_list = "16,64,256";
    length_list = "8000";
    seed_count = "10";
  }
  policy_list = args.take("--policies").value_or(policy_list);
  if (policy_list == "all") {
    policy_list.clear();
    for (const auto kind : builtin_policies) policy_list += std::string(policy_list.empty() ? "" : ",") + policy_name(kind);
  }
  const auto budgets = numbers<std::size_t>(args.take("--budgets").value_or(budget_list), "--budgets");
  const auto lengths = numbers<std::size_t>(args.take("--lengths").value_or(length_list), "--lengths");
  if (std::find(budgets.begin(), budgets.end(), std::size_t{0}) != budgets.end())
    throw usage_error("--budgets: a budget of 0 keeps no document state; use at least 1");
  task_list = args.take("--tasks").value_or(task_list);
  const auto seeds = parse_number<std::size_t>(args.take("--seeds").value_or(seed_count), "--seeds", 0, max_seeds);
  const auto seed_base = parse_number<std::uint64_t>(args.take("--seed-base").value_or("0"), "--seed-base");
  if (seeds > std::numeric_limits<std::uint64_t>::max() - seed_base)
    throw usage_error("--seed-base " + std::to_string(seed_base) + " + --seeds " + std::to_string(seeds) + " overflows");
  const auto facts = parse_number<std::size_t>(args.take("--facts").value_or("8"), "--facts");
  const auto chunk = parse_number<std::size_t>(args.take("--chunk").value_or("64"), "--chunk");
  if (chunk == 0) throw usage_error("--chunk: 0 reads nothing; use at least 1");
  const auto full_max = parse_number<std::size_t>(args.take("--full-max-length").value_or("4096"), "--full-max-length");
  const auto citrus_pool = parse_number<std::size_t>(args.take("--citrus-pool").value_or("1"), "--citrus-pool", 1, max_pool);
  if (citrus_pool % 2 == 0) throw usage_error("--citrus-pool must be odd (a window centred on the slot)");
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
  if (!args.positional().empty()) throw usage_error("unexpected argument " + args.positional()[0]);
  if (!model_path) throw usage_error("--model is required");
  // One thread by default: the toy models' matrices (hidden 64) are too small to split across cores.
  set_threads_option(threads.value_or("1"));

  std::vector<policy_spec> policies;
  for (const auto& name : split(policy_list)) policies.push_back(parse_policy_spec(name, citrus_pool));
  std::vector<toy_task> tasks;
  for (const auto& name : split(task_list)) tasks.push_back(parse_toy_task(name));
  if (policies.empty() || tasks.empty() || seeds == 0) throw usage_error("nothing to run");

  const auto weights = load_model(*model_path, load);
  if (weights.config.vocab_size != toy_vocabulary().size())
    throw usage_error(*model_path + ": vocabulary of " + std::to_string(weights.config.vocab_size) +
                      " tokens; the toy tasks need a toy model (" + std::to_string(toy_vocabulary().size()) + " tokens)");
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

  // The plan: every (task, length, seed) document, every policy, every budget (full: once).
  struct planned {
    toy_task task;
    std::size_t length;
    std::uint64_t seed;
    const policy_spec* policy;
    std::size_t budget;
  };
  std::vector<planned> plan;
  double total_tokens = 0.0;
  std::size_t skipped_full = 0;
  for (const auto task : tasks)
    for (const auto length : lengths)
      for (std::size_t s = 0; s < seeds; ++s)
        for (const auto& policy : policies) {
          if (policy.kind == policy_kind::full) {
            if (length > full_max) {
              ++skipped_full;
              continue;
            }
            plan.push_back({task, length, seed_base + s, &policy, length});
            total_tokens += static_cast<double>(length);
            continue;
          }
          for (const auto budget : budgets) {
            plan.push_back({task, length, seed_base + s, &policy, budget});
            total_tokens += static_cast<double>(length);
          }
        }
  std::fprintf(stderr, "pith-evict-bench: %s, %zu runs (%.1f M tokens), chunk %zu, KV cache %s, %zu thread(s)%s\n",
               model_path->c_str(), plan.size(), total_tokens / 1e6, chunk, kv_type_name(kv_type).c_str(), num_threads(),
               skipped_full ? ", full cache skipped above --full-max-length" : "");

  std::map<cell_key, cell> cells;
  std::map<std::string, std::size_t> errors;
  std::size_t failed_runs = 0;
  const auto start = std::chrono::steady_clock::now();
  double done_tokens = 0.0;
  std::size_t runs_done = 0;
  toy_document doc;
  std::tuple<toy_task, std::size_t, std::uint64_t> current{toy_task::kv, 0, 0};
  progress_bar(0.0, total_tokens, 0, plan.size(), 0.0);
  for (const auto& p : plan) {
    if (runs_done == 0 || current != std::tuple{p.task, p.length, p.seed}) {
      doc = make_toy_document(p.task, p.length, p.seed, facts);
      current = {p.task, p.length, p.seed};
    }
    reader_options options;
    options.policy = p.policy->kind;
    options.budget = p.budget;
    options.chunk_size = chunk;
    options.citrus_pool = p.policy->pool;
    options.snapkv_kernel = pool_kernel;
    options.snapkv_pool = snapkv_pool;
    options.kv_type = kv_type;
    options.max_answer_tokens = doc.answer.size() + 1;
    if (p.policy->kind == policy_kind::full) options.max_context = doc.ids.size() + doc.instruction.size() + doc.answer.size() + 2;
    const cell_key key{toy_task_name(p.task), p.length, p.policy->label, p.budget};
    try {
      reset_peak_memory();
      const auto t0 = std::chrono::steady_clock::now();
      reader r(weights, options, doc.instruction);
      r.feed(doc.ids);
      sampler greedy;
      const auto answer = r.answer(doc.answer.size(), greedy, {}, weights.config.eos_token_id);
      const double seconds = seconds_since(t0);
      cell& c = cells[key];
      ++c.runs;
      c.correct += answer == doc.answer ? 1 : 0;
      c.tokens += static_cast<double>(r.stats().tokens_read);
      c.reading_seconds += r.stats().reading_seconds;
      c.total_seconds += seconds;
      c.peak_bytes = std::max(c.peak_bytes, peak_resident_bytes());
      c.state_bytes = std::max(c.state_bytes, r.state_bytes());
    } catch (const pith::argument_error& e) {
      ++failed_runs;
      if (errors[e.what()]++ == 0) std::fprintf(stderr, "\n%s %s k=%zu: %s (cell skipped)\n", p.policy->label.c_str(),
                                                toy_task_name(p.task), p.budget, e.what());
    }
    done_tokens += static_cast<double>(p.length);
    ++runs_done;
    progress_bar(done_tokens, total_tokens, runs_done, plan.size(), seconds_since(start));
  }
  std::fprintf(stderr, "\n");

  // Summary tables: one per task and length, policies x budgets.
  for (const auto task : tasks)
    for (const auto length : lengths) {
      std::printf("\n%s, %zu tokens: fraction answered exactly (%zu documents per cell)\n", toy_task_name(task), length,
                  seeds);
      std::printf("%-22s", "policy \\ budget");
      for (const auto budget : budgets) std::printf(" %6zu", budget);
      std::printf("   tok/s\n");
      for (const auto& policy : policies) {
        std::printf("%-22s", policy.label.c_str());
        double tokens = 0.0, seconds = 0.0;
        if (policy.kind == policy_kind::full) {
          const auto found = cells.find({toy_task_name(task), length, "full", length});
          for (std::size_t i = 0; i < budgets.size(); ++i)
            if (found == cells.end()) std::printf(" %6s", "-");
            else std::printf(" %6.2f", static_cast<double>(found->second.correct) / static_cast<double>(found->second.runs));
          if (found != cells.end()) tokens = found->second.tokens, seconds = found->second.reading_seconds;
        } else {
          for (const auto budget : budgets) {
            const auto found = cells.find({toy_task_name(task), length, policy.label, budget});
            if (found == cells.end()) {
              std::printf(" %6s", "-");
              continue;
            }
            std::printf(" %6.2f", static_cast<double>(found->second.correct) / static_cast<double>(found->second.runs));
            tokens += found->second.tokens;
            seconds += found->second.reading_seconds;
          }
        }
        std::printf("   %.0f\n", seconds > 0 ? tokens / seconds : 0.0);
      }
    }

  const auto row_values = [](const cell& c) {
    const double score = static_cast<double>(c.correct) / static_cast<double>(c.runs);
    return std::tuple{score, c.reading_seconds > 0 ? c.tokens / c.reading_seconds : 0.0,
                      static_cast<double>(c.peak_bytes) / (1 << 20), static_cast<double>(c.state_bytes) / (1 << 20),
                      c.total_seconds / static_cast<double>(c.runs)};
  };
  const std::string model_name = std::filesystem::path(*model_path).filename().string().empty()
                                     ? std::filesystem::path(*model_path).parent_path().filename().string()
                                     : std::filesystem::path(*model_path).filename().string();
  if (csv_path) {
    std::ofstream out(*csv_path);
    if (!out) throw io_error(*csv_path + ": cannot write");
    out << "model,task,length,policy,budget,chunk,documents,correct,score,tokens_per_s,peak_memory_mib,state_mib,"
           "seconds_per_document\n";
    for (const auto& [key, c] : cells) {
      const auto [score, speed, peak, state, seconds] = row_values(c);
      char line[512];
      std::snprintf(line, sizeof line, "%s,%s,%zu,%s,%zu,%zu,%zu,%zu,%.4f,%.0f,%.1f,%.3f,%.3f\n", model_name.c_str(),
                    std::get<0>(key).c_str(), std::get<1>(key), std::get<2>(key).c_str(), std::get<3>(key), chunk, c.runs,
                    c.correct, score, speed, peak, state, seconds);
      out << line;
    }
    out.close();
    if (!out) throw io_error(*csv_path + ": writing failed");
    std::fprintf(stderr, "wrote %s\n", csv_path->c_str());
  }
  if (json_path) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& [key, c] : cells) {
      const auto [score, speed, peak, state, seconds] = row_values(c);
      rows.push_back({{"task", std::get<0>(key)}, {"length", std::get<1>(key)}, {"policy", std::get<2>(key)},
                      {"budget", std::get<3>(key)}, {"documents", c.runs}, {"correct", c.correct}, {"score", score},
                      {"tokens_per_s", std::round(speed)}, {"peak_memory_mib", std::round(peak * 10) / 10},
                      {"state_mib", std::round(state * 1000) / 1000}, {"seconds_per_document", seconds}});
    }
    const nlohmann::json root{{"model", model_name},       {"model_path", *model_path}, {"chunk", chunk},
                              {"facts", facts},            {"seeds", {seed_base, seed_base + seeds - 1}},
                              {"threads", num_threads()},  {"full_max_length", full_max},
                              {"kv_type", kv_type_name(kv_type)},
                              {"pool_kernel", pool_kernel},  {"pool_mode", pool_mode_name},
                              {"note", "budget of the full policy = the document length (it keeps every state)"},
                              {"rows", rows}};
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
