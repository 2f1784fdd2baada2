// SPDX-License-Identifier: MIT
// pith._pith: the Python bindings (pybind11) of the model, the session, the reader with built-in and
// Python-written eviction policies, the toy and RULER task generators. The package `pith`
// (python/pith/__init__.py) re-exports them beside its pure-Python parts (ModelConfig, pith.bench).
//
// Threads: every call that computes (load_model, Session.forward, generation steps, Reader.feed,
// Reader.answer, Reader.log_likelihood) releases the GIL while pith computes and takes it back only
// to call Python (a progress callback, a Python policy, the Ctrl-C check). One Session or Reader serves one thread at a time: a second thread entering
// meanwhile gets pith.ArgumentError instead of the undefined behaviour a shared session would be.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <pith/core/memory.hpp>
#include <pith/io/tokenizer_bpe.hpp>
#include <pith/io/tokenizer_stream.hpp>
#include <pith/pith.hpp>

#include "common.hpp"  // examples/: the tokenizer and chat-template lookup pith-read uses

namespace py = pybind11;

namespace {

// ---- errors ---------------------------------------------------------------------------------------

// pith.Error and its subclasses, made once at import (module init).
struct error_types {
  py::object error, io, format, config, shape, argument;
};
error_types& errors() {
  static error_types* types = new error_types();  // never destroyed: lives as long as the interpreter
  return *types;
}

[[noreturn]] void throw_argument(const std::string& message) { throw pith::argument_error(message); }

// ---- argument conversion --------------------------------------------------------------------------

// A non-negative Python int as a size: pith.ArgumentError naming `what` for a negative value.
std::size_t to_size(std::int64_t value, const char* what) {
  if (value < 0) throw_argument(std::string(what) + " must be >= 0, not " + std::to_string(value));
  return static_cast<std::size_t>(value);
}

// Token ids from a sequence of ints or a numpy integer array. TypeError for anything else
// (a str, floats, bools); range checks are the callee's (they name the vocabulary).
std::vector<std::int32_t> to_ids(const py::handle& object, const char* what) {
  if (py::isinstance<py::str>(object) || py::isinstance<py::bytes>(object))
    throw py::type_error(std::string(what) + ": expected token ids, got a string (this call needs ids)");
  std::vector<std::int32_t> ids;
  if (py::isinstance<py::array>(object)) {
    const auto array = py::reinterpret_borrow<py::array>(object);
    const char kind = array.dtype().kind();
    if (array.ndim() != 1) throw py::type_error(std::string(what) + ": expected a 1-D array of token ids");
    if (array.size() != 0 && kind != 'i' && kind != 'u')
      throw py::type_error(std::string(what) + ": expected integer token ids, got an array of dtype " +
                           py::str(array.dtype()).cast<std::string>());
    const auto values = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(object);
    if (!values) throw py::error_already_set();
    ids.reserve(static_cast<std::size_t>(values.size()));
    for (py::ssize_t i = 0; i < values.size(); ++i) {
      const std::int64_t id = values.data()[i];
      if (id < INT32_MIN || id > INT32_MAX)
        throw_argument(std::string(what) + ": token id " + std::to_string(id) + " is outside the vocabulary");
      ids.push_back(static_cast<std::int32_t>(id));
    }
    return ids;
  }
  if (!py::isinstance<py::sequence>(object))
    throw py::type_error(std::string(what) + ": expected a str or a sequence of token ids, got " +
                         py::str(py::type::of(object).attr("__name__")).cast<std::string>());
  for (const py::handle item : py::reinterpret_borrow<py::sequence>(object)) {
    if (!py::isinstance<py::int_>(item) || py::isinstance<py::bool_>(item))
      throw py::type_error(std::string(what) + ": token ids must be ints, got " +
                           py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    const auto id = item.cast<long long>();
    if (id < INT32_MIN || id > INT32_MAX)
      throw_argument(std::string(what) + ": token id " + std::to_string(id) + " is outside the vocabulary");
    ids.push_back(static_cast<std::int32_t>(id));
  }
  return ids;
}

template <class T>
py::array_t<T> copy_to_array(const std::vector<T>& values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One thread at a time in a Session or Reader (pith's sessions belong to one thread per call).
class busy_scope {
 public:
  busy_scope(std::mutex& mutex, const char* who) : lock_(mutex, std::try_to_lock) {
    if (!lock_.owns_lock())
      throw_argument(std::string(who) + " is in use by another thread; give each thread its own");
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

std::shared_ptr<pith::thread_pool> make_pool(std::optional<std::int64_t> threads) {
  if (!threads) return nullptr;
  const std::size_t n = to_size(*threads, "threads");
  const unsigned hardware = std::thread::hardware_concurrency();
  return std::make_shared<pith::thread_pool>(n != 0 ? n : std::max(hardware, 1u));
}

// ---- model ---------------------------------------------------------------------------------------

struct model_state {
  pith::model_weights weights;
  std::optional<pith::tokenizer> tok;
  std::optional<pith::chat_template> tmpl;
  std::string tmpl_error;  // why a template beside the model was not usable ("" when none or fine)
  std::string path;
};
using model_ptr = std::shared_ptr<model_state>;

model_ptr load(const std::string& path, std::optional<std::string> quantize, std::optional<std::string> weights_type,
               std::optional<std::string> tokenizer_path) {
  if (quantize && weights_type) throw_argument("load_model: quantize and weights_type exclude each other");
  pith::load_options options;
  try {
    if (weights_type) options = pith::examples::parse_weights_type(weights_type);
    options = pith::examples::parse_quantize(quantize, options);
  } catch (const pith::examples::usage_error& e) {
    throw_argument(std::string("load_model: ") + e.what());
  }
  auto m = std::make_shared<model_state>();
  m->path = path;
  {
    py::gil_scoped_release release;
    m->weights = pith::load_model(path, options);
    m->tok = pith::examples::find_tokenizer(path, tokenizer_path, static_cast<std::int32_t>(m->weights.config.vocab_size));
  }
  if (m->tok) {
    try {
      m->tmpl = pith::examples::find_chat_template(path, std::nullopt, *m->tok, "chat=False");
    } catch (const pith::error& e) {
      m->tmpl_error = e.what();
    }
  }
  return m;
}

const pith::tokenizer& tokenizer_of(const model_state& m) {
  if (!m.tok) throw_argument(m.path + ": no tokenizer found beside the model (load_model(..., tokenizer=PATH))");
  return *m.tok;
}

py::dict config_dict(const pith::model_config& c) {
  py::dict d;
  d["hidden_size"] = c.hidden_size;
  d["intermediate_size"] = c.intermediate_size;
  d["num_layers"] = c.num_layers;
  d["num_heads"] = c.num_heads;
  d["num_kv_heads"] = c.num_kv_heads;
  d["head_dim"] = c.head_dim;
  d["vocab_size"] = c.vocab_size;
  d["rms_norm_eps"] = c.rms_norm_eps;
  d["rope_theta"] = c.rope_theta;
  d["tie_word_embeddings"] = c.tie_word_embeddings;
  d["max_position_embeddings"] = c.max_position_embeddings;
  d["bos_token_id"] = c.bos_token_id;
  d["eos_token_id"] = c.eos_token_id;
  d["eos_token_ids"] = c.eos_token_ids;
  d["residual"] = c.residual == pith::residual_mode::standard ? "standard"
                  : c.residual == pith::residual_mode::block  ? "block"
                                                              : "full";
  d["attn_res_block_size"] = c.attn_res_block_size;
  std::vector<std::string> mixers, windows_names;
  std::vector<std::size_t> windows;
  for (std::size_t l = 0; l < c.num_layers; ++l) {
    mixers.emplace_back(pith::mixer_name(c.mixer(l)));
    windows.push_back(c.sliding_window(l));
  }
  d["mixers"] = mixers;
  d["sliding_windows"] = windows;
  d["family"] = pith::family_name(c.family);
  d["source"] = c.source;
  return d;
}

// ---- sampler -------------------------------------------------------------------------------------

// A Sampler's state (its random generator) changes with each draw: draws from several threads take turns.
struct py_sampler {
  pith::sampler_options options;
  pith::sampler s;
  std::mutex draw;
  explicit py_sampler(pith::sampler_options o) : options(o), s(o) {}
};

std::shared_ptr<py_sampler> make_sampler(double temperature, double top_p, std::int64_t seed, bool allow_nonfinite) {
  pith::sampler_options o;
  o.temperature = static_cast<float>(temperature);
  o.top_p = static_cast<float>(top_p);
  if (seed < 0) throw_argument("Sampler: seed must be >= 0, not " + std::to_string(seed));
  o.seed = static_cast<std::uint64_t>(seed);
  o.allow_nonfinite = allow_nonfinite;
  return std::make_shared<py_sampler>(o);
}

// ---- session ---------------------------------------------------------------------------------------

struct py_session {
  model_ptr model;
  std::shared_ptr<pith::thread_pool> pool;
  std::unique_ptr<pith::session> s;
  std::mutex busy;
};

py::array forward(py_session& self, const py::handle& ids_object, bool all_logits) {
  const auto ids = to_ids(ids_object, "Session.forward");
  if (ids.empty()) throw_argument("Session.forward: the input is empty");
  const busy_scope in_use(self.busy, "the Session");
  const std::size_t vocab = self.model->weights.config.vocab_size;
  py::array_t<float> out = all_logits ? py::array_t<float>({static_cast<py::ssize_t>(ids.size()), static_cast<py::ssize_t>(vocab)})
                                      : py::array_t<float>(static_cast<py::ssize_t>(vocab));
  float* data = out.mutable_data();
  {
    py::gil_scoped_release release;
    self.s->forward(ids, data, all_logits);
  }
  return out;
}

// Session.generate's iterator: one forward pass per step, the GIL released during it.
struct py_generation {
  py::object session_object;  // keeps the Session alive
  py_session* session = nullptr;
  std::vector<std::int32_t> prompt;
  std::size_t steps = 0, done = 0;
  std::shared_ptr<py_sampler> pick;
  std::vector<std::int32_t> stop;
  std::vector<float> logits;
  std::int32_t last = -1;
  bool finished = false;

  std::int32_t next() {
    if (finished || done >= steps) throw py::stop_iteration();
    const busy_scope in_use(session->busy, "the Session");
    std::int32_t token = -1;
    {
      py::gil_scoped_release release;
      if (done == 0) session->s->forward(prompt, logits.data());
      else session->s->forward(std::span(&last, 1), logits.data());
      const std::lock_guard lock(pick->draw);
      token = pick->s.sample(logits);
    }
    ++done;
    last = token;
    if (std::find(stop.begin(), stop.end(), token) != stop.end()) {
      finished = true;
      throw py::stop_iteration();
    }
    return token;
  }
};

// ---- Python policies ----------------------------------------------------------------------------

// The view a Python policy gets: scores and positions as read-only numpy arrays over pith's own
// buffers (no copy), valid during the call only; the indices it returns are checked and sorted here.
struct python_policy {
  PyObject* function = nullptr;  // owned by the py_reader (policy_function)
  bool instruction = false;      // pass the instruction's scores instead of the chunk's
  bool per_head = false;

  void select(const pith::eviction_view& view, std::vector<std::uint32_t>& keep) {
    py::gil_scoped_acquire gil;
    const auto scores_span = instruction || view.scores.empty() ? view.instruction_scores : view.scores;
    // A base object makes numpy view the memory instead of copying it.
    const py::capsule base(static_cast<const void*>(scores_span.data()), [](void*) {});
    py::array_t<float> scores({static_cast<py::ssize_t>(scores_span.size())}, {static_cast<py::ssize_t>(sizeof(float))},
                              scores_span.data(), base);
    py::array_t<std::int64_t> positions({static_cast<py::ssize_t>(view.document_positions.size())},
                                        {static_cast<py::ssize_t>(sizeof(std::int64_t))}, view.document_positions.data(),
                                        base);
    scores.attr("setflags")(py::arg("write") = false);
    positions.attr("setflags")(py::arg("write") = false);
    const auto fn = py::reinterpret_borrow<py::object>(function);
    const py::object result = per_head ? fn(scores, positions, view.budget, view.layer, view.head)
                                       : fn(scores, positions, view.budget, view.layer);
    const std::string where = "policy (layer " + std::to_string(view.layer) + (per_head ? ", head " + std::to_string(view.head) : "") + ")";
    if (result.is_none()) throw_argument(where + " returned None; it must return the indices of the slots to keep");
    const py::array array = py::module_::import("numpy").attr("asarray")(result);
    if (array.ndim() != 1) throw_argument(where + " returned a " + std::to_string(array.ndim()) + "-D array; it must return a 1-D list of indices");
    const char kind = array.dtype().kind();
    if (array.size() != 0 && kind != 'i' && kind != 'u')
      throw_argument(where + " returned indices of dtype " + py::str(array.dtype()).cast<std::string>() +
                     "; they must be integers");
    const auto values = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
    if (static_cast<std::size_t>(values.size()) > view.budget)
      throw_argument(where + " returned " + std::to_string(values.size()) + " indices, more than the budget of " +
                     std::to_string(view.budget));
    keep.clear();
    for (py::ssize_t i = 0; i < values.size(); ++i) {
      const std::int64_t index = values.data()[i];
      if (index < 0 || static_cast<std::uint64_t>(index) >= view.old_slots)
        throw_argument(where + " returned index " + std::to_string(index) + ", outside 0.." +
                       std::to_string(view.old_slots - 1) + " (the " + std::to_string(view.old_slots) + " old slots)");
      keep.push_back(static_cast<std::uint32_t>(index));
    }
    std::sort(keep.begin(), keep.end());
    if (const auto twice = std::adjacent_find(keep.begin(), keep.end()); twice != keep.end())
      throw_argument(where + " returned index " + std::to_string(*twice) + " more than once");
  }
};

// ---- reader ----------------------------------------------------------------------------------------

struct py_reader {
  model_ptr model;
  std::shared_ptr<pith::thread_pool> pool;
  std::unique_ptr<pith::reader> r;
  py::object policy_function;  // a Python policy, or None
  std::vector<std::int32_t> instruction;
  std::vector<std::int32_t> answer_ids;
  std::string answer_text;
  std::int32_t last_token = -1;
  bool fed = false, failed = false;
  // Text documents go through a streaming encoder, as in pith-read: the tokens of the whole text,
  // however it is split across feed calls; the held-back tail is read by answer().
  std::unique_ptr<pith::streaming_encoder> encoder;
  bool fed_ids = false;
  // The chat template's frame (pith-read without --raw): tokens and text before the document, the
  // blank line after it; stop ids (the first stops the generation, any ends the answer text).
  bool chat = false;
  std::vector<std::int32_t> prefix;
  std::string prefix_text;
  bool trim_document = false;
  bool text_finished = false;
  std::vector<std::int32_t> stop_ids;
  std::vector<std::pair<double, double>> busy_intervals;  // monotonic seconds of each computing call
  std::mutex busy;

  void check_usable(const char* call) const {
    if (failed)
      throw_argument(std::string("Reader.") + call +
                     ": an earlier call on this Reader failed and left it in an unknown state; make a new Reader");
  }
};

pith::position_mode parse_positions(const std::string& name) {
  if (name == "reindexed") return pith::position_mode::reindexed;
  if (name == "original") return pith::position_mode::original;
  throw_argument("positions must be 'reindexed' or 'original', not '" + name + "'");
}

pith::dtype parse_kv_type(const std::string& name) {
  if (name == "f32") return pith::dtype::f32;
  if (name == "f16") return pith::dtype::f16;
  if (name == "bf16") return pith::dtype::bf16;
  if (name == "q8_0") return pith::dtype::q8_0;
  throw_argument("kv_type must be 'f32', 'f16', 'bf16' or 'q8_0', not '" + name + "'");
}

// Instruction text is encoded as pith-read --raw does (no special tokens); ids are taken as they are.
std::vector<std::int32_t> instruction_ids(const model_state& m, const py::handle& object, const char* what) {
  if (object.is_none()) return {};
  if (py::isinstance<py::str>(object)) return tokenizer_of(m).encode(object.cast<std::string>(), false);
  return to_ids(object, what);
}

std::unique_ptr<py_reader> make_reader(const model_ptr& model, const py::object& policy, std::int64_t budget,
                                       std::int64_t chunk, const std::string& positions, const py::object& instruction,
                                       const py::object& question, std::int64_t max_answer_tokens, std::int64_t sink,
                                       std::int64_t snapkv_window, std::int64_t snapkv_kernel,
                                       const std::string& snapkv_pool, std::int64_t chunkkv_size,
                                       std::int64_t pyramid_beta, std::int64_t random_seed, std::int64_t citrus_pool,
                                       std::int64_t max_context, std::optional<std::int64_t> threads,
                                       const std::string& kv_type, const std::string& protocol,
                                       std::optional<double> ratio, bool question_in_cut,
                                       const std::string& policy_scores, bool policy_per_head,
                                       std::optional<bool> chat, std::optional<std::string> system,
                                       bool head_adaptive, double adakv_alpha) {
  if (!model) throw py::type_error("Reader: model must be a pith.Model");
  auto out = std::make_unique<py_reader>();
  out->model = model;
  pith::reader_options o;
  const bool python_policy_given = !policy.is_none() && !py::isinstance<py::str>(policy);
  if (python_policy_given && !PyCallable_Check(policy.ptr()))
    throw py::type_error("Reader: policy must be a policy name (str) or a callable f(scores, positions, budget, layer)");
  if (!python_policy_given) {
    // "NAME" or "adakv(NAME)" (AdaKV's head-adaptive budgets over NAME's scores), as the programs take them
    const auto label = pith::parse_policy_label(policy.is_none() ? "citrus-shared" : policy.cast<std::string>());
    o.policy = label.kind;
    o.head_adaptive = label.head_adaptive || head_adaptive;
    if (o.head_adaptive) pith::check_adakv_combines(o.policy);
  } else if (head_adaptive) {
    throw_argument("Reader: head_adaptive (AdaKV) needs a built-in per-head scorer; a Python policy returns keep lists");
  }
  o.adakv_alpha = adakv_alpha;
  o.budget = to_size(budget, "budget");
  o.chunk_size = to_size(chunk, "chunk");
  o.positions = parse_positions(positions);
  o.max_answer_tokens = to_size(max_answer_tokens, "max_answer_tokens");
  o.sink = to_size(sink, "sink");
  o.snapkv_window = to_size(snapkv_window, "snapkv_window");
  o.snapkv_kernel = to_size(snapkv_kernel, "snapkv_kernel");
  o.snapkv_pool = pith::parse_pool_mode(snapkv_pool);
  o.chunkkv_size = to_size(chunkkv_size, "chunkkv_size");
  o.pyramid_beta = to_size(pyramid_beta, "pyramid_beta");
  o.random_seed = static_cast<std::uint64_t>(to_size(random_seed, "random_seed"));
  o.citrus_pool = to_size(citrus_pool, "citrus_pool");
  o.max_context = to_size(max_context, "max_context");
  out->pool = make_pool(threads);
  o.executor = out->pool;
  o.kv_type = parse_kv_type(kv_type);
  o.protocol = pith::parse_protocol(protocol);
  o.ratio = ratio;
  o.question_in_cut = question_in_cut;
  if (policy_scores != "chunk" && policy_scores != "instruction")
    throw_argument("policy_scores must be 'chunk' or 'instruction', not '" + policy_scores + "'");
  // The chat template applies to a text instruction, by default when the model has one (pith-read).
  const bool text_instruction = py::isinstance<py::str>(instruction);
  if (chat.value_or(false) && !text_instruction)
    throw_argument("Reader: chat=True frames a text instruction with the chat template; the instruction is not text");
  out->chat = text_instruction && chat.value_or(model->tmpl.has_value() || !model->tmpl_error.empty());
  if (out->chat && !model->tmpl) {
    if (!model->tmpl_error.empty()) throw pith::format_error(model->tmpl_error);
    throw pith::config_error(model->path + ": the model has no chat template (chat=False reads without one)");
  }
  if (system && !out->chat) throw_argument("Reader: system needs the chat template (a text instruction, chat not False)");
  const auto& c = model->weights.config;
  out->stop_ids = {c.eos_token_id};
  if (out->chat) {
    // pith-read's prompt: one user turn holds the document, a blank line and the instruction. The
    // text before the user's content up to its last special token is encoded on its own; the rest
    // of it is tokenized with the document's start; the instruction takes the turn's end and the
    // assistant's header.
    const pith::tokenizer& tok = tokenizer_of(*model);
    const pith::chat_template& tmpl = *model->tmpl;
    pith::chat_render_options render;
    render.enable_thinking = false;  // Qwen3: answer directly
    const auto frame = tmpl.user_turn(system, render);
    std::size_t cut = 0;
    for (const std::string& special : tmpl.special_strings())
      for (std::size_t at = frame.before.find(special); at != std::string::npos; at = frame.before.find(special, at + 1))
        cut = std::max(cut, at + special.size());
    if (!tmpl.renders_bos()) out->prefix = pith::examples::tokens_before_text(tok);
    const auto head = pith::encode_chat(tok, tmpl, std::string_view(frame.before).substr(0, cut));
    out->prefix.insert(out->prefix.end(), head.begin(), head.end());
    out->prefix_text = frame.before.substr(cut);
    std::string text = instruction.cast<std::string>();
    if (tmpl.trims_content()) {
      out->trim_document = true;
      text.resize(pith::chat_detail::before_trailing_space(text));
    }
    out->instruction = pith::encode_chat(tok, tmpl, text + frame.after);
    out->stop_ids = pith::chat_stop_tokens(tok, tmpl);
    if (std::find(out->stop_ids.begin(), out->stop_ids.end(), c.eos_token_id) == out->stop_ids.end())
      out->stop_ids.push_back(c.eos_token_id);
  } else {
    out->instruction = instruction_ids(*model, instruction, "Reader instruction");
  }
  auto question_ids = instruction_ids(*model, question, "Reader question");
  if (python_policy_given) {
    // A Python policy replaces the selection of a reader built with a policy whose traits are
    // checked first (a streaming reader: no instruction needed); use_policy then sets the request.
    o.policy = pith::policy_kind::streaming;
  }
  out->r = std::make_unique<pith::reader>(model->weights, o, out->instruction, std::move(question_ids));
  if (python_policy_given) {
    out->policy_function = policy;
    python_policy p;
    p.function = out->policy_function.ptr();
    p.instruction = policy_scores == "instruction";
    p.per_head = policy_per_head;
    pith::policy_request request;
    request.chunk_scores = !p.instruction;
    request.instruction_scores = p.instruction;
    request.final_cut = p.instruction;  // the final cut scores with the instruction, as citrus-shared's does
    request.per_head = policy_per_head;
    out->r->use_policy(p, request);
  }
  return out;
}

void feed(py_reader& self, const py::handle& document, const py::object& progress) {
  self.check_usable("feed");
  std::vector<std::int32_t> ids;
  if (py::isinstance<py::str>(document)) {
    if (self.fed_ids) throw_argument("Reader.feed: this Reader was fed token ids; feed the rest as ids too");
    // As pith-read: the special prefix (BOS) before the text unless a chat template frames it.
    if (!self.encoder) {
      self.encoder = std::make_unique<pith::streaming_encoder>(tokenizer_of(*self.model), !self.chat);
      ids = self.prefix;
      if (!self.prefix_text.empty()) self.encoder->push(self.prefix_text, ids);
    }
    const std::string text = document.cast<std::string>();
    std::string_view block = text;
    if (self.trim_document) {  // a trimming template strips the content's leading whitespace
      block.remove_prefix(pith::chat_detail::leading_space(block));
      if (!block.empty()) self.trim_document = false;
    }
    self.encoder->push(block, ids);
  } else {
    if (self.encoder) throw_argument("Reader.feed: this Reader was fed text; feed the rest as text too");
    if (self.chat)
      throw_argument("Reader.feed: a Reader with a chat template reads text (the template frames it); give text, or "
                     "chat=False");
    ids = to_ids(document, "Reader.feed");
    self.fed_ids = true;
  }
  // Checked here too, so that a bad id leaves the Reader usable (the C++ reader checks before reading).
  const std::size_t vocab = self.model->weights.config.vocab_size;
  for (const std::int32_t id : ids)
    if (id < 0 || static_cast<std::size_t>(id) >= vocab)
      throw_argument("reader::feed: token " + std::to_string(id) + " is outside the vocabulary");
  if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
    throw py::type_error("Reader.feed: progress must be callable (it receives the tokens read so far)");
  const busy_scope in_use(self.busy, "the Reader");
  // After each chunk: the progress callback, and Ctrl-C (KeyboardInterrupt) honoured; without a
  // callback the GIL is taken for the signal check at most every signal_check_seconds.
  constexpr double signal_check_seconds = 0.1;
  double last_check = monotonic_seconds();
  const pith::reader::progress_callback callback = [fn = progress.ptr(), given = !progress.is_none(),
                                                    &last_check](std::size_t done) {
    if (!given && monotonic_seconds() - last_check < signal_check_seconds) return;
    py::gil_scoped_acquire gil;
    last_check = monotonic_seconds();
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (given) py::reinterpret_borrow<py::object>(fn)(done);
  };
  const double start = monotonic_seconds();
  try {
    py::gil_scoped_release release;
    self.r->feed(ids, callback);
  } catch (...) {
    self.failed = true;
    throw;
  }
  self.busy_intervals.emplace_back(start, monotonic_seconds());
  if (!ids.empty()) {
    self.fed = true;
    self.last_token = ids.back();
  }
}

// The tokens a text document still holds back: the encoder's tail and the blank line that ends a chat
// document (once; the reader reads them before answering or scoring).
std::vector<std::int32_t> finish_text(py_reader& self) {
  std::vector<std::int32_t> tail;
  if (!self.encoder || self.text_finished) return tail;
  self.text_finished = true;
  if (self.chat) self.encoder->push("\n\n", tail);
  self.encoder->finish(tail);
  if (!tail.empty()) self.last_token = tail.back();
  return tail;
}

pith::continuation_likelihood log_likelihood(py_reader& self, const py::handle& continuation) {
  self.check_usable("log_likelihood");
  const auto ids = py::isinstance<py::str>(continuation)
                       ? tokenizer_of(*self.model).encode(continuation.cast<std::string>(), false)
                       : to_ids(continuation, "Reader.log_likelihood");
  const busy_scope in_use(self.busy, "the Reader");
  const std::vector<std::int32_t> tail = finish_text(self);
  pith::continuation_likelihood out;
  try {
    py::gil_scoped_release release;
    if (!tail.empty()) self.r->feed(tail);
    out = self.r->log_likelihood(ids);
  } catch (...) {
    self.failed = true;
    throw;
  }
  return out;
}

std::string answer(py_reader& self, std::int64_t max_tokens, const std::shared_ptr<py_sampler>& given,
                   std::optional<std::int32_t> stop) {
  self.check_usable("answer");
  const std::size_t steps = to_size(max_tokens, "max_tokens");
  if (steps > self.r->options().max_answer_tokens)
    throw_argument("reader::answer: " + std::to_string(steps) + " steps exceed max_answer_tokens (" +
                   std::to_string(self.r->options().max_answer_tokens) + ")");
  const busy_scope in_use(self.busy, "the Reader");
  const std::vector<std::int32_t> stops = stop ? std::vector<std::int32_t>{*stop} : self.stop_ids;
  pith::sampler greedy;
  pith::sampler& pick = given ? given->s : greedy;
  std::vector<std::int32_t> tokens;
  const std::vector<std::int32_t> tail = finish_text(self);
  const double start = monotonic_seconds();
  try {
    py::gil_scoped_release release;
    std::unique_lock<std::mutex> sampler_lock;
    if (given) sampler_lock = std::unique_lock(given->draw);
    if (!tail.empty()) self.r->feed(tail);
    tokens = self.r->answer(steps, pick, {}, stops.front());
  } catch (...) {
    self.failed = true;
    throw;
  }
  self.busy_intervals.emplace_back(start, monotonic_seconds());
  // As pith-read: the ids up to the first stop id (included), the text decoded token by token after
  // the one before (the instruction's last, or the document's) up to it.
  if (const auto first = std::find_first_of(tokens.begin(), tokens.end(), stops.begin(), stops.end());
      first != tokens.end())
    tokens.erase(first + 1, tokens.end());
  self.answer_ids = tokens;
  std::string text;
  if (self.model->tok) {
    std::int32_t previous = self.instruction.empty() ? self.last_token : self.instruction.back();
    for (const std::int32_t token : tokens) {
      if (std::find(stops.begin(), stops.end(), token) != stops.end()) break;
      text += self.model->tok->decode(previous, token);
      previous = token;
    }
  }
  self.answer_text = text;
  return text;
}

void check_layer_head(const py_reader& self, std::int64_t layer, std::int64_t head) {
  const auto& c = self.model->weights.config;
  if (layer < 0 || static_cast<std::size_t>(layer) >= c.num_layers)
    throw_argument("layer " + std::to_string(layer) + " is outside 0.." + std::to_string(c.num_layers - 1));
  if (head < 0 || static_cast<std::size_t>(head) >= c.num_kv_heads)
    throw_argument("head " + std::to_string(head) + " is outside 0.." + std::to_string(c.num_kv_heads - 1) +
                   " (the KV heads)");
}

py::list memory_report(const std::vector<pith::layer_memory>& report) {
  py::list out;
  for (std::size_t l = 0; l < report.size(); ++l) {
    py::dict d;
    d["layer"] = l;
    d["mixer"] = pith::mixer_name(report[l].mixer);
    d["kv_cache_bytes"] = report[l].kv_cache_bytes;
    d["state_bytes"] = report[l].state_bytes;
    std::string type(pith::dtype_name(report[l].kv_type));
    std::transform(type.begin(), type.end(), type.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    d["kv_type"] = type;  // as the kv_type keyword spells it: f32, f16, bf16, q8_0
    d["window"] = report[l].window;
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_pith, m) {
  m.doc() = "pith's C++ core: models, sessions, the long-document reader and its eviction policies.";

  // Exceptions: pith::error's classes, with the C++ messages.
  auto& e = errors();
  const auto make_error = [&](const char* name, py::handle base, const char* doc) {
    py::object type = py::reinterpret_steal<py::object>(
        PyErr_NewExceptionWithDoc((std::string("pith.") + name).c_str(), doc, base.ptr(), nullptr));
    if (!type) throw py::error_already_set();
    m.attr(name) = type;
    return type;
  };
  e.error = make_error("Error", PyExc_RuntimeError, "Base of every error pith reports (pith::error).");
  const auto with = [&](PyObject* second) { return py::make_tuple(e.error, py::handle(second)); };
  e.io = make_error("IoError", with(PyExc_OSError), "A file could not be opened, mapped or read (pith::io_error).");
  e.format = make_error("FormatError", with(PyExc_ValueError),
                        "A file's contents are not what its format requires (pith::format_error).");
  e.config = make_error("ConfigError", with(PyExc_ValueError),
                        "A configuration key is missing, mistyped or inconsistent (pith::config_error).");
  e.shape = make_error("ShapeError", with(PyExc_ValueError), "Tensor or buffer shapes do not agree (pith::shape_error).");
  e.argument = make_error("ArgumentError", with(PyExc_ValueError),
                          "An argument is outside its documented domain (pith::argument_error).");
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    auto& types = errors();
    try {
      std::rethrow_exception(p);
    } catch (const pith::io_error& x) {
      PyErr_SetString(types.io.ptr(), x.what());
    } catch (const pith::format_error& x) {
      PyErr_SetString(types.format.ptr(), x.what());
    } catch (const pith::config_error& x) {
      PyErr_SetString(types.config.ptr(), x.what());
    } catch (const pith::shape_error& x) {
      PyErr_SetString(types.shape.ptr(), x.what());
    } catch (const pith::argument_error& x) {
      PyErr_SetString(types.argument.ptr(), x.what());
    } catch (const pith::examples::usage_error& x) {
      PyErr_SetString(types.argument.ptr(), x.what());
    } catch (const pith::error& x) {
      PyErr_SetString(types.error.ptr(), x.what());
    }
  });

  // ---- Tokenizer ----
  struct py_tokenizer {
    model_ptr model;
  };
  py::class_<py_tokenizer>(m, "Tokenizer", "The model's tokenizer (found beside it as pith-read finds it).")
      .def("encode",
           [](const py_tokenizer& t, const std::string& text, bool add_special, bool parse_special) {
             return tokenizer_of(*t.model).encode(text, add_special, parse_special);
           },
           py::arg("text"), py::arg("add_special") = false, py::arg("parse_special") = true,
           "The token ids of `text` (a new list). add_special: the tokens the vocabulary puts around a text "
           "(BOS for SentencePiece and word vocabularies); parse_special: special tokens' text becomes those tokens.")
      .def("decode",
           [](const py_tokenizer& t, const py::handle& ids) { return tokenizer_of(*t.model).decode_all(to_ids(ids, "decode")); },
           py::arg("ids"), "The text of a sequence of token ids (a sequence of ints or a numpy integer array).")
      .def("token_text", [](const py_tokenizer& t, std::int32_t id) { return tokenizer_of(*t.model).token_text(id); },
           py::arg("id"), "The stored text of one token id.")
      .def("token_id", [](const py_tokenizer& t, const std::string& text) { return tokenizer_of(*t.model).token_id(text); },
           py::arg("text"), "The id whose text is exactly `text`, or None.")
      .def_property_readonly("vocab_size", [](const py_tokenizer& t) { return tokenizer_of(*t.model).vocab_size(); })
      .def_property_readonly("bos_id", [](const py_tokenizer& t) { return tokenizer_of(*t.model).bos_id(); },
                             "-1 when the vocabulary has none.")
      .def_property_readonly("eos_id", [](const py_tokenizer& t) { return tokenizer_of(*t.model).eos_id(); });

  // ---- Model ----
  py::class_<model_state, model_ptr>(m, "Model",
                                     "Weights loaded by pith.load_model, shared (read-only) by any number of "
                                     "Sessions and Readers, on any threads.")
      .def_property_readonly("path", [](const model_state& s) { return s.path; })
      .def("_config_dict", [](const model_state& s) { return config_dict(s.weights.config); })
      .def_property_readonly("tokenizer",
                             [](const model_ptr& s) -> py::object {
                               if (!s->tok) return py::none();
                               return py::cast(py_tokenizer{s});
                             },
                             "The tokenizer found beside the model (tokenizer.json, vocab.json, tokenizer.bin, a GGUF's "
                             "vocabulary), or None.")
      .def_property_readonly("chat_template_name",
                             [](const model_state& s) -> std::optional<std::string> {
                               if (!s.tmpl) return std::nullopt;
                               return std::string(s.tmpl->name());
                             },
                             "The chat template family found beside the model (as pith-read finds it), or None.")
      .def("chat_template",
           [](const model_state& s, const py::sequence& messages, bool add_generation_prompt,
              std::optional<bool> enable_thinking) {
             if (!s.tmpl)
               throw pith::config_error(s.path + ": the model has no chat template" +
                                        (s.tmpl_error.empty() ? std::string() : " (" + s.tmpl_error + ")"));
             std::vector<pith::chat_message> list;
             for (const py::handle item : messages) {
               if (py::isinstance<py::dict>(item)) {
                 const auto d = py::reinterpret_borrow<py::dict>(item);
                 if (!d.contains("role") || !d.contains("content"))
                   throw py::type_error("chat_template: a message dict needs 'role' and 'content'");
                 list.push_back({d["role"].cast<std::string>(), d["content"].cast<std::string>()});
               } else {
                 const auto pair = item.cast<std::pair<std::string, std::string>>();
                 list.push_back({pair.first, pair.second});
               }
             }
             pith::chat_render_options options;
             options.add_generation_prompt = add_generation_prompt;
             options.enable_thinking = enable_thinking;
             return s.tmpl->render(list, options);
           },
           py::arg("messages"), py::arg("add_generation_prompt") = true, py::arg("enable_thinking") = py::none(),
           "The chat template's text for `messages`: (role, content) pairs or {'role': ..., 'content': ...} dicts "
           "(roles system, user, assistant). pith.ConfigError when the model has no template pith recognises.")
      .def("__repr__", [](const model_state& s) {
        const auto& c = s.weights.config;
        return "<pith.Model " + s.path + ": " + std::to_string(c.num_layers) + " layers, hidden " +
               std::to_string(c.hidden_size) + ", vocabulary " + std::to_string(c.vocab_size) + ">";
      });

  m.def("load_model", &load, py::arg("path"), py::arg("quantize") = py::none(), py::arg("weights_type") = py::none(),
        py::arg("tokenizer") = py::none(),
        "Loads a model (a Hugging Face folder, .safetensors, .gguf or llama2.c .bin) and the tokenizer beside it.\n\n"
        "quantize: quantizes the weight matrices at load ('q8_0', 'q4_0', 'q4_k', ..., 'q4_k_m'); weights_type:\n"
        "'f32', 'f16' or 'bf16' converts them instead (default: used in place, in the file's type; a safetensors\n"
        "file is memory-mapped, not copied). tokenizer: a tokenizer file instead of the one beside the model.\n"
        "Raises pith.IoError for a missing file, pith.FormatError / pith.ConfigError for a bad one.");

  // ---- Sampler ----
  py::class_<py_sampler, std::shared_ptr<py_sampler>>(m, "Sampler",
                                                      "Greedy (temperature 0), temperature and nucleus (top_p) sampling, seeded.")
      .def(py::init(&make_sampler), py::arg("temperature") = 0.0, py::arg("top_p") = 1.0, py::arg("seed") = 1,
           py::arg("allow_nonfinite") = false)
      .def("sample",
           [](py_sampler& s, const py::array_t<float, py::array::c_style | py::array::forcecast>& logits) {
             if (logits.ndim() != 1) throw_argument("Sampler.sample: logits must be a 1-D array");
             const std::span<const float> row(logits.data(), static_cast<std::size_t>(logits.size()));
             py::gil_scoped_release release;  // another thread may hold the draw lock while it waits for the GIL
             const std::lock_guard lock(s.draw);
             return s.s.sample(row);
           },
           py::arg("logits"), "The id drawn from one row of logits.")
      .def_property_readonly("temperature", [](const py_sampler& s) { return s.options.temperature; })
      .def_property_readonly("top_p", [](const py_sampler& s) { return s.options.top_p; })
      .def_property_readonly("seed", [](const py_sampler& s) { return s.options.seed; });

  // ---- Session ----
  py::class_<py_generation>(m, "Generation", "Session.generate's iterator of token ids.")
      .def("__iter__", [](py_generation& g) -> py_generation& { return g; }, py::return_value_policy::reference_internal)
      .def("__next__", &py_generation::next);

  py::class_<py_session>(m, "Session",
                         "A KV cache and activations over a Model: forward passes and generation. One thread at a time.")
      .def(py::init([](const model_ptr& model, std::int64_t max_context, std::optional<std::int64_t> threads,
                       std::int64_t max_chunk, const std::string& kv_type) {
             if (!model) throw py::type_error("Session: model must be a pith.Model");
             auto out = std::make_unique<py_session>();
             out->model = model;
             out->pool = make_pool(threads);
             pith::session_options o;
             o.max_context = to_size(max_context, "max_context");
             o.max_chunk = to_size(max_chunk, "max_chunk");
             o.kv_type = parse_kv_type(kv_type);
             o.executor = out->pool;
             out->s = std::make_unique<pith::session>(model->weights, o);
             return out;
           }),
           py::arg("model"), py::arg("max_context") = 0, py::arg("threads") = py::none(), py::arg("max_chunk") = 512,
           py::arg("kv_type") = "f32",
           "max_context: KV rows (0: the model's max_position_embeddings); threads: a thread pool of its own "
           "(0: one per hardware thread; None: the process-wide pool); kv_type: 'f32', 'f16', 'bf16' or 'q8_0'.")
      .def("forward", &forward, py::arg("ids"), py::arg("all_logits") = false,
           "Runs `ids` at the next positions. Returns the last token's logits, shape (vocab,), or with all_logits every "
           "token's, shape (len(ids), vocab): a new float32 array pith writes into directly (no further copy). "
           "The GIL is released during the pass.")
      .def("generate",
           [](py::object self_object, const py::handle& prompt, std::int64_t steps,
              std::shared_ptr<py_sampler> sampler, std::optional<std::vector<std::int32_t>> stop) {
             auto& self = self_object.cast<py_session&>();
             py_generation g;
             if (py::isinstance<py::str>(prompt)) g.prompt = tokenizer_of(*self.model).encode(prompt.cast<std::string>(), true);
             else g.prompt = to_ids(prompt, "Session.generate");
             if (g.prompt.empty()) throw_argument("Session.generate: the prompt is empty");
             g.steps = to_size(steps, "steps");
             g.pick = sampler ? sampler : make_sampler(0.0, 1.0, 1, false);
             g.stop = stop.value_or(self.model->weights.config.eos_token_ids.empty()
                                        ? std::vector<std::int32_t>{self.model->weights.config.eos_token_id}
                                        : self.model->weights.config.eos_token_ids);
             g.logits.resize(self.model->weights.config.vocab_size);
             g.session = &self;
             g.session_object = self_object;
             return g;
           },
           py::arg("prompt"), py::arg("steps"), py::arg("sampler") = nullptr, py::arg("stop") = py::none(),
           "An iterator of up to `steps` token ids continuing `prompt` (text, encoded with BOS, or ids). Each step "
           "runs one forward pass with the GIL released. It ends before a stop token (default: the model's EOS ids).")
      .def("reset", [](py_session& s) {
             const busy_scope in_use(s.busy, "the Session");
             s.s->reset();
           }, "Empties the cache: the next token takes position 0.")
      .def_property_readonly("position", [](const py_session& s) { return s.s->position(); },
                             "The position the next token takes.")
      .def("memory_report", [](const py_session& s) { return memory_report(s.s->memory_report()); },
           "Per layer: a dict of mixer, kv_cache_bytes, state_bytes, kv_type and window.");

  // ---- Reader ----
  py::class_<pith::reader_stats>(m, "ReaderStats", "What a Reader did so far (a copy).")
      .def_readonly("tokens_read", &pith::reader_stats::tokens_read)
      .def_readonly("chunks", &pith::reader_stats::chunks)
      .def_readonly("reading_seconds", &pith::reader_stats::reading_seconds)
      .def_readonly("eviction_seconds", &pith::reader_stats::eviction_seconds)
      .def_readonly("instruction_seconds", &pith::reader_stats::instruction_seconds)
      .def_readonly("state_bytes", &pith::reader_stats::state_bytes)
      .def("__repr__", [](const pith::reader_stats& s) {
        return "ReaderStats(tokens_read=" + std::to_string(s.tokens_read) + ", chunks=" + std::to_string(s.chunks) +
               ", reading_seconds=" + std::to_string(s.reading_seconds) + ", state_bytes=" +
               std::to_string(s.state_bytes) + ")";
      });

  py::class_<pith::continuation_likelihood>(m, "Likelihood", "Reader.log_likelihood's result.")
      .def_readonly("sum", &pith::continuation_likelihood::sum, "The continuation's natural log-probability (<= 0).")
      .def_readonly("tokens", &pith::continuation_likelihood::tokens)
      .def_property_readonly("perplexity", &pith::continuation_likelihood::perplexity, "exp(-sum / tokens).")
      .def("__repr__", [](const pith::continuation_likelihood& l) {
        return "Likelihood(sum=" + std::to_string(l.sum) + ", tokens=" + std::to_string(l.tokens) +
               ", perplexity=" + std::to_string(l.perplexity()) + ")";
      });

  py::class_<py_reader>(m, "Reader",
                        "Reads a document of any length in chunks, evicting KV states with a policy, then answers "
                        "the instruction (pith::reader, docs/eviction.md). One thread at a time; Readers on several "
                        "threads may share one Model and run in parallel.")
      .def(py::init(&make_reader), py::arg("model"), py::kw_only(), py::arg("policy") = "citrus-shared",
           py::arg("budget") = 768, py::arg("chunk") = 256, py::arg("positions") = "reindexed",
           py::arg("instruction") = py::none(), py::arg("question") = py::none(), py::arg("max_answer_tokens") = 256,
           py::arg("sink") = 4, py::arg("snapkv_window") = 32, py::arg("snapkv_kernel") = 7,
           py::arg("snapkv_pool") = "avg", py::arg("chunkkv_size") = 20, py::arg("pyramid_beta") = 20,
           py::arg("random_seed") = 0, py::arg("citrus_pool") = 1, py::arg("max_context") = 0,
           py::arg("threads") = py::none(), py::arg("kv_type") = "f32", py::arg("protocol") = "chunked",
           py::arg("ratio") = py::none(), py::arg("question_in_cut") = false, py::arg("policy_scores") = "chunk",
           py::arg("policy_per_head") = false, py::arg("chat") = py::none(), py::arg("system") = py::none(),
           py::arg("head_adaptive") = false, py::arg("adakv_alpha") = 0.2,
           "Every pith::reader_options field is a keyword of the same name (chunk: chunk_size; threads: a thread "
           "pool of its own, None: the process-wide pool).\n\n"
           "policy: a built-in policy's name ('citrus-shared', 'snapkv', 'streaming', 'h2o', 'tova', ...) or a\n"
           "callable f(scores, positions, budget, layer) -> indices of the old slots to keep (at most `budget`,\n"
           "distinct, in 0..len(scores)-1; any order). scores (float32) and positions (int64, each slot's\n"
           "document position) are read-only numpy views of pith's buffers, valid during the call only (copy\n"
           "them to keep them). policy_scores: 'chunk' (the chunk's mean attention, per layer) or 'instruction'\n"
           "(the instruction's, plus a final cut before the answer, as citrus-shared); policy_per_head: one call\n"
           "per KV head, f(scores, positions, budget, layer, head).\n"
           "instruction / question: text or token ids. A text instruction is framed by the model's chat template\n"
           "when it has one, as pith-read frames it (one user turn: the document, a blank line, the instruction;\n"
           "system: a system message), unless chat=False; without a template it is encoded without special\n"
           "tokens (pith-read --raw). chat=True requires a template.")
      .def("feed", &feed, py::arg("document"), py::arg("progress") = py::none(),
           "Reads `document`: text or token ids (one kind per Reader). Text is tokenized as pith-read does: BOS (or the "
           "chat template's text before the user's message) first, the pieces of all feed calls as one text (split it "
           "anywhere), the held-back tail read by answer(). Whole chunks are read now, a partial chunk waits for more "
           "or for answer(). progress(tokens_read) is called after each chunk. The GIL is released while pith reads; "
           "Ctrl-C interrupts the reading (KeyboardInterrupt; the Reader is then unusable).")
      .def("answer", &answer, py::arg("max_tokens") = 64, py::arg("sampler") = nullptr, py::arg("stop") = py::none(),
           "Reads any partial last chunk, makes the policy's final cut, runs the instruction and generates up to "
           "max_tokens tokens (greedy unless a Sampler is given), stopping after `stop` (default: the model's EOS, or "
           "the chat template's stop tokens). Returns the text up to the stop token; answer_ids holds the ids up to it "
           "(included). The GIL is released meanwhile.")
      .def("log_likelihood", &log_likelihood, py::arg("continuation"),
           "Instead of answer(): reads any partial last chunk and scores `continuation` (text, encoded without "
           "special tokens, or ids) as the text after the document, with the evicted cache (pith::reader::"
           "log_likelihood: no instruction, no final cut). Returns a Likelihood (sum, tokens, perplexity).")
      .def_property_readonly("answer_ids", [](const py_reader& r) { return r.answer_ids; },
                             "The ids answer() generated (a new list), the stop token included when reached.")
      .def_property_readonly("answer_logits", [](const py_reader& r) { return copy_to_array(r.r->answer_logits()); },
                             "The logits row the first answer token was sampled from (a copy; empty before answer()).")
      .def_property_readonly("instruction_ids", [](const py_reader& r) { return r.instruction; },
                             "The instruction's ids as read (with the chat template's frame when one applies).")
      .def_property_readonly("chat", [](const py_reader& r) { return r.chat; },
                             "Whether the chat template frames the document and the instruction.")
      .def_property_readonly("stats", [](const py_reader& r) { return r.r->stats(); },
                             "A ReaderStats copy: tokens_read, chunks, reading/eviction/instruction seconds, state_bytes.")
      .def("memory_report", [](const py_reader& r) { return memory_report(r.r->memory_report()); },
           "Per layer: a dict of mixer, kv_cache_bytes, state_bytes, kv_type and window (both caches of "
           "citrus-separate summed).")
      .def("kept_positions",
           [](const py_reader& r, std::int64_t layer, std::int64_t head, bool instruction_cache) {
             check_layer_head(r, layer, head);
             return copy_to_array(r.r->document_positions(static_cast<std::size_t>(layer), static_cast<std::size_t>(head),
                                                          instruction_cache));
           },
           py::arg("layer"), py::arg("head") = 0, py::arg("instruction_cache") = false,
           "The document positions of the states (layer, KV head) holds, in slot order: a new int64 array (a copy: "
           "the reader's lists change as it reads). Empty for layers the policy does not act on.")
      .def("_busy_intervals", [](const py_reader& r) { return r.busy_intervals; },
           "Monotonic (start, end) seconds of each feed and answer call's computation (tests of parallel reading).");

  // ---- tasks ----
  py::class_<pith::toy_document>(m, "ToyDocument", "A generated toy-task document (ids of the toy vocabulary).")
      .def_property_readonly("ids", [](const pith::toy_document& d) { return copy_to_array(d.ids); },
                             "BOS and the document's words: a new int32 array.")
      .def_readonly("instruction", &pith::toy_document::instruction, "The question's ids (no BOS).")
      .def_readonly("answer", &pith::toy_document::answer, "The expected greedy answer's ids.")
      .def_readonly("fact_offsets", &pith::toy_document::fact_offsets, "Where each fact starts in ids.");
  m.def("toy_document",
        [](const std::string& task, std::int64_t length, std::int64_t seed, std::int64_t facts) {
          return pith::make_toy_document(pith::parse_toy_task(task), to_size(length, "length"),
                                         static_cast<std::uint64_t>(to_size(seed, "seed")), to_size(facts, "facts"));
        },
        py::arg("task"), py::arg("length"), py::arg("seed"), py::arg("facts") = 8,
        "The toy task document ('passkey', 'kv' or 'hop') of `length` tokens (BOS included) for `seed`, as "
        "pith-evict-bench generates it.");
  m.def("toy_vocabulary", &pith::toy_vocabulary, "The toy models' 157 words (id = index).");

  py::class_<pith::ruler_document>(m, "RulerDocument", "A generated RULER-task document (text).")
      .def_property_readonly("task", [](const pith::ruler_document& d) { return std::string(pith::ruler_task_name(d.task)); })
      .def_readonly("length", &pith::ruler_document::length)
      .def_readonly("seed", &pith::ruler_document::seed)
      .def_readonly("tokens", &pith::ruler_document::tokens)
      .def_readonly("haystack", &pith::ruler_document::haystack)
      .def_readonly("depth", &pith::ruler_document::depth)
      .def_readonly("document", &pith::ruler_document::document)
      .def_readonly("question", &pith::ruler_document::question)
      .def_readonly("answer_prefix", &pith::ruler_document::answer_prefix)
      .def_readonly("gold", &pith::ruler_document::gold)
      .def_property_readonly("instruction", &pith::ruler_document::instruction);
  m.def("ruler_document",
        [](const std::string& task, std::int64_t length, std::int64_t seed, const model_ptr& model,
           std::optional<double> depth, std::int64_t vt_chains) {
          pith::ruler_options options;
          options.depth = depth;
          options.vt_chains = to_size(vt_chains, "vt_chains");
          pith::ruler_token_counter count;
          if (model) {
            const pith::tokenizer& tok = tokenizer_of(*model);
            count = [&tok](std::string_view text) { return tok.encode(text, true, false).size(); };
          } else {
            count = [](std::string_view text) { return pith::ruler_word_count(text); };
          }
          return pith::make_ruler_document(pith::parse_ruler_task(task), to_size(length, "length"),
                                           static_cast<std::uint64_t>(to_size(seed, "seed")), count, options);
        },
        py::arg("task"), py::arg("length"), py::arg("seed"), py::arg("model") = nullptr, py::arg("depth") = py::none(),
        py::arg("vt_chains") = 1,
        "RULER's task document (niah_single_1, ..., vt, cwe, fwe) of at most `length` tokens of `model`'s "
        "tokenizer (None: whitespace-separated words), as pith-evict-bench generates it.");
  m.def("ruler_score",
        [](const std::string& prediction, const std::vector<std::string>& gold) {
          return pith::string_match_all(prediction, gold);
        },
        py::arg("prediction"), py::arg("gold"), "RULER's string_match_all: the fraction of `gold` in the prediction.");
  m.def("ruler_tasks", [] {
    std::vector<std::string> out;
    for (const auto task : pith::all_ruler_tasks) out.emplace_back(pith::ruler_task_name(task));
    return out;
  });
  m.def("policy_names", [] {
    std::vector<std::string> out;
    for (const auto kind : pith::builtin_policies) out.emplace_back(pith::policy_name(kind));
    return out;
  }, "Every built-in eviction policy's name.");
  m.def("ratio_budget",
        [](std::int64_t n, double ratio) { return pith::ratio_budget(to_size(n, "n"), ratio); }, py::arg("n"),
        py::arg("ratio"), "The states a compression ratio keeps of n: floor(n (1 - ratio)), kvpress's convention.");
  m.def("peak_resident_bytes", &pith::peak_resident_bytes, "The process's peak resident memory (VmHWM), bytes.");
  m.def("set_num_threads", [](std::int64_t n) { pith::set_num_threads(to_size(n, "threads")); }, py::arg("threads"),
        "Sizes the process-wide thread pool (0: one thread per hardware thread).");
  m.def("num_threads", [] { return pith::num_threads(); }, "The process-wide thread pool's threads.");
  m.attr("__version__") = PITH_VERSION_STRING;
}
