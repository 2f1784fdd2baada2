// SPDX-License-Identifier: MIT
// pith-info: without a model, prints pith's version, the SIMD instruction set compiled in, the thread
// count, and checks the fused kernel on a small random head against the double-precision reference;
// with a model, describes it: configuration, token mixers, residual mode, tensor types, parameters, memory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include <pith/kernels/reference.hpp>

#include "common.hpp"

namespace {

constexpr const char* usage =
    "usage: pith-info [MODEL [--tensors]]\n"
    "  without MODEL: version, SIMD instruction set, threads, and a self-check of the fused kernel\n"
    "  MODEL      a Hugging Face safetensors directory, a .gguf file or a llama2.c .bin checkpoint:\n"
    "             prints its configuration, token mixers, residual mode, tensor types and counts,\n"
    "             parameter count and the memory its weights take once loaded\n"
    "  --tensors  also lists every tensor of the file (name, type, shape)\n";

int self_check() {
  std::printf("pith %s\n", pith::version_string);
  std::printf("simd: %s (%zu float lanes)\n", pith::simd::native::ops::name, pith::simd::native::ops::width);
  std::printf("threads: %zu\n", pith::num_threads());

  constexpr std::size_t m = 64, n = 1000, d = 64;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> q(m * d), k(n * d), v(n * d), out(m * d), ref_out(m * d), imp(n), ref_imp(n);
  for (auto* x : {&q, &k, &v})
    for (float& value : *x) value = u(rng);
  pith::kernels::softmax_importance_args args;
  args.queries = q.data();
  args.query_stride = d;
  args.keys = k.data();
  args.key_stride = d;
  args.values = v.data();
  args.value_stride = d;
  args.m = m;
  args.n = n;
  args.d = d;
  args.scale = 1.0f / std::sqrt(static_cast<float>(d));
  args.causal = true;
  args.causal_offset = n - m;
  args.output = out.data();
  args.output_stride = d;
  args.importance = imp.data();
  pith::aligned_buffer<float> scratch(pith::kernels::softmax_importance_scratch_size(m, n, d));
  pith::kernels::softmax_importance(args, scratch.data());
  args.output = ref_out.data();
  args.importance = ref_imp.data();
  pith::kernels::reference::softmax_importance(args);
  double worst_output = 0.0, worst_importance = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) worst_output = std::max(worst_output, double(std::abs(out[i] - ref_out[i])));
  for (std::size_t j = 0; j < n; ++j) worst_importance = std::max(worst_importance, double(std::abs(imp[j] - ref_imp[j])));
  std::printf("softmax_importance (m=%zu, n=%zu, d=%zu, causal): max |output - reference| = %.2e, "
              "max |importance - reference| = %.2e\n", m, n, d, worst_output, worst_importance);
  return worst_output < 1e-4 && worst_importance < 1e-6 ? 0 : 1;
}

// One tensor as the file stores it.
struct stored_tensor {
  std::string name;
  std::string type;
  std::vector<std::int64_t> shape;
  std::uint64_t elements = 0;
  std::uint64_t bytes = 0;
};

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::uint64_t product(const std::vector<std::int64_t>& shape) {
  std::uint64_t count = 1;
  for (const auto extent : shape) count *= static_cast<std::uint64_t>(extent);
  return count;
}

// The tensors of the model's file(s), in file order (llama2.c: its arrays under run.c's names).
std::vector<stored_tensor> stored_tensors(const std::filesystem::path& path, std::string& format) {
  std::vector<stored_tensor> out;
  const auto directory = std::filesystem::is_directory(path) ? path
                         : path.filename() == "config.json" ? path.parent_path()
                                                            : std::filesystem::path();
  if (!directory.empty()) {
    format = "Hugging Face safetensors";
    std::vector<std::filesystem::path> files;
    if (std::filesystem::exists(directory / "model.safetensors")) {
      files.push_back(directory / "model.safetensors");
    } else {
      for (const auto& entry : std::filesystem::directory_iterator(directory))
        if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
      std::sort(files.begin(), files.end());
    }
    for (const auto& file : files) {
      const pith::safetensors_file reader(file);
      for (const auto& name : reader.names()) {
        const auto tensor = reader.tensor(name);
        out.push_back({name, std::string(tensor.dtype_name), tensor.shape, product(tensor.shape), tensor.bytes.size()});
      }
    }
    return out;
  }
  if (path.extension() == ".gguf") {
    const pith::gguf_file reader(path);
    format = "GGUF v3";
    for (const auto& info : reader.tensor_infos()) {
      const auto* type = pith::find_ggml_type(info.type);
      out.push_back({info.name, type ? std::string(type->name) : "type " + std::to_string(info.type), info.shape(),
                     product(info.shape()), info.byte_size});
    }
    return out;
  }
  const pith::llama2c_checkpoint reader(path);
  format = "llama2.c checkpoint, version 0";
  const auto& c = reader.config();
  const auto& w = reader.weights();
  const std::int64_t layers = c.n_layers, dim = c.dim, kv = c.kv_dim(), hidden = c.hidden_dim,
                     vocab = c.vocab_size, seq = c.seq_len, half_head = c.head_size() / 2;
  const std::vector<std::pair<const char*, std::vector<std::int64_t>>> arrays{
      {"token_embedding_table", {vocab, dim}}, {"rms_att_weight", {layers, dim}}, {"wq", {layers, dim, dim}},
      {"wk", {layers, kv, dim}}, {"wv", {layers, kv, dim}}, {"wo", {layers, dim, dim}},
      {"rms_ffn_weight", {layers, dim}}, {"w1", {layers, hidden, dim}}, {"w2", {layers, dim, hidden}},
      {"w3", {layers, hidden, dim}}, {"rms_final_weight", {dim}}, {"freq_cis_real", {seq, half_head}},
      {"freq_cis_imag", {seq, half_head}}};
  for (const auto& [name, shape] : arrays) out.push_back({name, "F32", shape, product(shape), product(shape) * 4});
  if (!c.shared_classifier) out.push_back({"wcls", "F32", {vocab, dim}, w.wcls.size(), w.wcls.size() * 4});
  return out;
}

std::string thousands(std::uint64_t value) {
  std::string digits = std::to_string(value), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

double mebibytes(std::uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

int describe(const std::filesystem::path& path, bool list_tensors) {
  using namespace pith;
  const auto weights = load_model(path);
  const auto& c = weights.config;
  std::string format;
  const auto tensors = stored_tensors(path, format);

  std::printf("model: %s (%s)\n", path.string().c_str(), format.c_str());
  std::printf("config: hidden %zu, intermediate %zu, layers %zu, heads %zu, kv heads %zu, head_dim %zu, vocab %zu, "
              "context %zu\n", c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
              c.vocab_size, c.max_position_embeddings);
  std::printf("        rms_norm_eps %g, rope_theta %g (%s), embeddings %s, bos %d, eos %d\n",
              static_cast<double>(c.rms_norm_eps), static_cast<double>(c.rope_theta),
              c.rope == kernels::rope_layout::half ? "half-rotation pairs" : "adjacent pairs",
              c.tie_word_embeddings && weights.lm_head_storage.empty() ? "tied to the LM head" : "separate from the LM head",
              c.bos_token_id, c.eos_token_id);
  switch (c.residual) {
    case residual_mode::standard: std::printf("residual: standard (h += out)\n"); break;
    case residual_mode::block:
      std::printf("residual: block attention residuals, %zu layers per block (%zu blocks)%s\n", c.attn_res_block_size,
                  c.attn_res_blocks(), c.attn_res_two_phase ? ", two-phase" : "");
      break;
    case residual_mode::full: std::printf("residual: full attention residuals\n"); break;
  }
  // Token mixers as runs of consecutive layers: "0-3 standard, 4 approximate".
  std::string mixers;
  for (std::size_t begin = 0; begin < c.num_layers;) {
    std::size_t end = begin + 1;
    while (end < c.num_layers && c.mixer(end) == c.mixer(begin)) ++end;
    mixers += (mixers.empty() ? "" : ", ") + std::string(end - begin == 1 ? "layer " : "layers ") + std::to_string(begin) +
              (end - begin == 1 ? "" : "-" + std::to_string(end - 1)) + " " + mixer_name(c.mixer(begin));
    begin = end;
  }
  bool any_mlp_mixer = false;
  for (std::size_t i = 0; i < c.num_layers; ++i) any_mlp_mixer = any_mlp_mixer || c.mixer(i) == mixer_kind::mlp;
  if (any_mlp_mixer) mixers += " (mlp mixer width " + std::to_string(c.mixer_mlp_intermediate_size) + ")";
  std::printf("token mixers: %s\n", mixers.c_str());

  std::map<std::string, std::pair<std::size_t, std::uint64_t>> by_type;  // type -> (tensors, bytes)
  std::uint64_t file_elements = 0, file_bytes = 0;
  for (const auto& t : tensors) {
    auto& [count, bytes] = by_type[t.type];
    ++count;
    bytes += t.bytes;
    file_elements += t.elements;
    file_bytes += t.bytes;
  }
  std::string types;
  for (const auto& [type, entry] : by_type) {
    char text[96];
    std::snprintf(text, sizeof text, "%s%s x%zu (%.2f MiB)", types.empty() ? "" : ", ", type.c_str(), entry.first,
                  mebibytes(entry.second));
    types += text;
  }
  std::printf("tensors: %zu in the file: %s\n", tensors.size(), types.c_str());
  std::printf("parameters: %s in the file (%.2f MiB); pith uses the matrices in place in their stored type: "
              "%.2f MiB of parameters\n",
              thousands(file_elements).c_str(), mebibytes(file_bytes), mebibytes(weights.parameter_bytes()));
  std::printf("read per decoded token: %.2f MiB of weights\n", mebibytes(weights.bytes_read_per_token()));
  if (list_tensors)
    for (const auto& t : tensors)
      std::printf("  %-48s %-6s %s\n", t.name.c_str(), t.type.c_str(), shape_text(t.shape).c_str());
  return 0;
}

int run(int argc, char** argv) {
  pith::examples::arguments args(argc, argv);
  const bool list_tensors = args.flag("--tensors");
  const auto rest = args.positional();
  if (rest.size() > 1) throw pith::examples::usage_error("more than one MODEL given");
  if (rest.empty()) {
    if (list_tensors) throw pith::examples::usage_error("--tensors needs a MODEL");
    return self_check();
  }
  return describe(rest[0], list_tensors);
}

}  // namespace

int main(int argc, char** argv) {
  return pith::examples::run_main("pith-info", usage, [&] { return run(argc, argv); }, argc, argv);
}
