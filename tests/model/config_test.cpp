// SPDX-License-Identifier: MIT
// model_config parsing and validation, and the bounds of model loading: every missing, mistyped or
// out-of-range key is named in the error, and no value from a file sizes a buffer unchecked.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <limits>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pith/cache/kv_cache.hpp>
#include <pith/io/safetensors.hpp>
#include <pith/io/tokenizer.hpp>
#include <pith/model/config.hpp>
#include <pith/model/random_weights.hpp>
#include <pith/model/residual.hpp>
#include <pith/model/transformer.hpp>
#include <pith/model/weights.hpp>
#include <pith/runtime/reader.hpp>
#include <pith/simd/exp.hpp>
#include <pith/simd/scalar.hpp>

#include "../io/test_util.hpp"

namespace {

nlohmann::json valid() {
  return {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"vocab_size", 100}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}};
}

std::string error_of(const nlohmann::json& json) {
  try {
    pith::config_from_json(json, "config.json");
  } catch (const pith::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsFollowHuggingFace) {
  auto json = valid();
  json.erase("num_key_value_heads");
  const auto c = pith::config_from_json(json, "config.json");
  EXPECT_EQ(c.num_kv_heads, 4u);
  EXPECT_EQ(c.head_dim, 16u);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope, pith::kernels::rope_layout::half);
}

TEST(Config, ExplicitHeadDimIsIndependentOfHiddenSize) {
  auto json = valid();
  json["head_dim"] = 24;
  EXPECT_EQ(pith::config_from_json(json, "config.json").head_dim, 24u);
}

TEST(Config, MissingKeysAreNamed) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    auto json = valid();
    json.erase(key);
    const auto message = error_of(json);
    EXPECT_NE(message.find(key), std::string::npos) << message;
    EXPECT_NE(message.find("config.json"), std::string::npos) << message;
  }
}

TEST(Config, WrongTypesAndValuesAreNamed) {
  auto json = valid();
  json["hidden_size"] = "64";
  EXPECT_NE(error_of(json).find("hidden_size"), std::string::npos);
  json = valid();
  json["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(json).find("num_key_value_heads"), std::string::npos);
  json = valid();
  json["tie_word_embeddings"] = 1;
  EXPECT_NE(error_of(json).find("tie_word_embeddings"), std::string::npos);
  json = valid();
  json["rms_norm_eps"] = -1.0;
  EXPECT_NE(error_of(json).find("rms_norm_eps"), std::string::npos);
  json = valid();
  json["num_hidden_layers"] = -2;
  EXPECT_NE(error_of(json).find("num_hidden_layers"), std::string::npos);
  json = valid();
  json["head_dim"] = 7;
  EXPECT_NE(error_of(json).find("head_dim"), std::string::npos);
  json = valid();
  json["rope_scaling"] = {{"type", "linear"}};
  EXPECT_NE(error_of(json).find("rope_scaling"), std::string::npos);
  EXPECT_NE(error_of(nlohmann::json::array()).find("not a JSON object"), std::string::npos);
}

TEST(Config, MissingFileIsAnIoError) {
  EXPECT_THROW(pith::load_config_json("/nonexistent/config.json"), pith::io_error);
}

}  // namespace

// Inputs the fuzzers found (fuzz/corpus/fuzz_model/crash_*: a selector byte, then the model file):
// each must be a pith::error, not an allocation failure or a crash.
TEST(ModelLoading, FuzzerFindingsAreErrors) {
  const std::filesystem::path folder =
      std::filesystem::path(PITH_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "corpus" / "fuzz_model";
  for (const char* name : {"crash_gguf_block_count_2e31", "crash_gguf_scalar_token_embd"}) {
    const auto path = folder / name;
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    const std::string bytes = pith_test::read_file(path);
    ASSERT_EQ(bytes.front(), '\0') << name << " is not a GGUF input of fuzz_model";
    const pith_test::temp_file model(".gguf");
    model.write(std::string_view(bytes).substr(1));
    EXPECT_THROW(pith::load_model(model.path()), pith::error) << name;
  }
}

/// Loads a fuzz_model input whose selector byte is 1 (uint16 length, config.json, model.safetensors).
static pith::model_weights load_fuzz_safetensors_input(const std::filesystem::path& input, const std::filesystem::path& directory) {
  const std::string bytes = pith_test::read_file(input);
  EXPECT_EQ(bytes.at(0), '\1') << input;
  const std::size_t length = static_cast<unsigned char>(bytes.at(1)) | (std::size_t{static_cast<unsigned char>(bytes.at(2))} << 8);
  std::ofstream(directory / "config.json", std::ios::binary) << bytes.substr(3, length);
  std::ofstream(directory / "model.safetensors", std::ios::binary) << bytes.substr(3 + length);
  return pith::load_model(directory);
}

// fuzz_model found weights whose attention scores are NaN: the scalar exp converted NaN to an
// integer (undefined behaviour, caught by the sanitize preset). A forward must end in logits or a
// pith::error.
TEST(ModelLoading, NanAttentionScoresRunWithoutUndefinedBehaviour_7) {
  const auto input = std::filesystem::path(PITH_TEST_DATA_DIR) / ".." / ".." / "fuzz" / "corpus" / "fuzz_model" /
                     "crash_nan_scores_in_exp";
  const auto directory = std::filesystem::temp_directory_path() / ("pith_model_nan_" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  const auto weights = load_fuzz_safetensors_input(input, directory);
  std::filesystem::remove_all(directory);
  pith::session_options options;
  options.max_context = 8;
  options.max_chunk = 4;
  pith::session session(weights, options);
  std::vector<float> logits(weights.config.vocab_size);
  const std::vector<std::int32_t> chunk = {0, 15, 8};
  try {
    session.forward(chunk, logits.data());
  } catch (const pith::error&) {
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(pith::simd::exp_approx<pith::simd::scalar::ops>(nan)));
}

// ---- Bounds on every value a model file sizes something with -------------------------------------

namespace {

/// A directory in the temporary directory, unique to this process and test, removed on destruction.
class temp_directory {
 public:
  temp_directory() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("pith_model_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  temp_directory(const temp_directory&) = delete;
  temp_directory& operator=(const temp_directory&) = delete;
  ~temp_directory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

/// The config_error message of `json`, or "" when it is accepted.
std::string config_error_of(const nlohmann::json& json) { return error_of(json); }

nlohmann::json block_config(std::uint64_t block_size) {
  auto json = valid();
  json["attn_res_mode"] = "block";
  json["attn_res_block_size"] = block_size;
  return json;
}

// GGUF metadata for config_from_gguf tests (no tensors: the configuration is read first).
using gguf_value = std::variant<std::uint32_t, std::uint64_t, std::int32_t, float, std::string>;
using gguf_metadata = std::vector<std::pair<std::string, gguf_value>>;

gguf_metadata gguf_base() {
  return {{"general.architecture", std::string("llama")},
          {"llama.embedding_length", std::uint32_t{64}},
          {"llama.feed_forward_length", std::uint32_t{128}},
          {"llama.block_count", std::uint32_t{2}},
          {"llama.attention.head_count", std::uint32_t{4}},
          {"llama.attention.head_count_kv", std::uint32_t{2}},
          {"llama.vocab_size", std::uint32_t{100}},
          {"llama.context_length", std::uint32_t{64}},
          {"llama.rope.freq_base", 10000.0f},
          {"llama.attention.layer_norm_rms_epsilon", 1e-5f}};
}

gguf_metadata with(gguf_metadata metadata, const std::string& key, gguf_value value) {
  for (auto& [k, v] : metadata)
    if (k == key) {
      v = std::move(value);
      return metadata;
    }
  metadata.emplace_back(key, std::move(value));
  return metadata;
}

std::string gguf_bytes(const gguf_metadata& metadata) {
  pith_test::gguf_builder builder;
  builder.header(0, metadata.size());
  for (const auto& [key, value] : metadata) {
    if (const auto* u32 = std::get_if<std::uint32_t>(&value)) builder.kv(key, 4, *u32);
    if (const auto* u64 = std::get_if<std::uint64_t>(&value)) builder.kv(key, 10, *u64);
    if (const auto* i32 = std::get_if<std::int32_t>(&value)) builder.kv(key, 5, *i32);
    if (const auto* f = std::get_if<float>(&value)) builder.kv(key, 6, *f);
    if (const auto* s = std::get_if<std::string>(&value)) builder.kv_string(key, *s);
  }
  return builder.bytes();
}

/// The config_error message config_from_gguf gives for `metadata`, or "" when it is accepted.
std::string gguf_error_of(const gguf_metadata& metadata) {
  const pith_test::temp_file file(".gguf");
  file.write(gguf_bytes(metadata));
  const pith::gguf_file gguf(file.path());
  try {
    pith::config_from_gguf(gguf);
  } catch (const pith::config_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

TEST(loader_bounds, attn_res_block_size_is_bounded_3_1) {
  EXPECT_EQ(config_error_of(block_config(2)), "");  // the model's 2 layers in one block
  EXPECT_EQ(config_error_of(block_config(3)), "");  // the same single block
  for (const std::uint64_t size : {std::uint64_t{65537}, std::uint64_t{1} << 31, std::uint64_t{1} << 62,
                                   std::numeric_limits<std::uint64_t>::max()}) {
    const auto message = config_error_of(block_config(size));
    EXPECT_TRUE(contains(message, "attn_res_block_size")) << size << ": " << message;
  }
  const auto message = gguf_error_of(with(gguf_base(), "llama.attn_res_block_size", std::uint64_t{1} << 62));
  EXPECT_TRUE(contains(message, "llama.attn_res_block_size")) << message;
  EXPECT_EQ(gguf_error_of(with(gguf_base(), "llama.attn_res_block_size", std::uint32_t{1})), "");
}

TEST(loader_bounds, residual_stream_sizes_do_not_wrap_3_1) {
  // A configuration built in code skips the parsers: the stream's own sizes must not wrap. With 2^55
  // layers per block, 2 x 2^55 + 1 sites of 256 tokens x 64 floats were 2^70 + 2^14 floats, which
  // wrapped to 2^14: one site's room for five.
  pith::model_config c = pith::config_from_json(block_config(1), "config.json");
  c.attn_res_block_size = std::size_t{1} << 55;
  const pith::residual_stream stream(c, 256);
  // The running and mixed rows, one snapshot, and 2 x 2 + 1 sites (a block holds at most 2 layers).
  const std::size_t rows = 256 * 64;
  EXPECT_GE(stream.bytes_allocated(), (2 + 1 + 5) * rows * sizeof(float));
  // Sizes beyond std::size_t throw instead of wrapping.
  c.attn_res_block_size = 1;
  EXPECT_THROW(pith::residual_stream(c, std::size_t{1} << 60), pith::argument_error);
}

TEST(loader_bounds, mixer_mlp_intermediate_size_is_bounded_3_2) {
  auto json = valid();
  json["mixer_mlp_intermediate_size"] = std::uint64_t{1} << 40;
  EXPECT_TRUE(contains(config_error_of(json), "mixer_mlp_intermediate_size")) << config_error_of(json);
  json["token_mixers"] = {"mlp", "standard"};
  EXPECT_TRUE(contains(config_error_of(json), "mixer_mlp_intermediate_size")) << config_error_of(json);
  json["mixer_mlp_intermediate_size"] = 32;
  EXPECT_EQ(config_error_of(json), "");
}

TEST(loader_bounds, session_sizes_mixer_buffers_only_when_a_layer_uses_them_3_2) {
  auto json = valid();
  json["mixer_mlp_intermediate_size"] = 1 << 24;  // the largest accepted: 64 MiB per token of chunk
  const auto w = pith::random_weights(pith::config_from_json(json, "config.json"), 1);
  pith::session_options options;
  options.max_context = 16;
  options.max_chunk = 1;
  const pith::session s(w, options);
  // Everything this 64-wide, 2-layer model needs for one token at a time fits in far less than one
  // 64 MiB mixer row; the bound only has to separate "mixer buffers allocated" from "not".
  constexpr std::size_t bound = std::size_t{8} << 20;
  EXPECT_LT(s.bytes_allocated(), bound);
}

TEST(loader_bounds, max_position_embeddings_is_bounded_3_3) {
  for (const std::uint64_t positions : {std::uint64_t{1} << 40, std::uint64_t{1} << 62}) {
    auto json = valid();
    json["max_position_embeddings"] = positions;
    EXPECT_TRUE(contains(config_error_of(json), "max_position_embeddings")) << config_error_of(json);
  }
  const auto message = gguf_error_of(with(gguf_base(), "llama.context_length", std::uint64_t{1} << 62));
  EXPECT_TRUE(contains(message, "llama.context_length")) << message;
}

TEST(loader_bounds, session_and_cache_sizes_that_overflow_throw_3_3) {
  auto w = pith::random_weights(pith::config_from_json(valid(), "config.json"), 2);
  pith::session_options options;
  options.max_context = std::size_t{1} << 62;  // 2 layers x 2 KV heads x 2^62 rows wraps to 0
  EXPECT_THROW(pith::session(w, options), pith::argument_error);
  EXPECT_THROW(pith::kv_cache(2, 2, 16, std::size_t{1} << 62), pith::argument_error);
  // A default session and a `full` reader size their cache by max_position_embeddings.
  w.config.max_position_embeddings = std::size_t{1} << 62;
  EXPECT_THROW(pith::session{w}, pith::argument_error);
  pith::reader_options reader_options;
  reader_options.policy = pith::policy_kind::full;
  reader_options.max_context = 0;
  EXPECT_THROW(pith::reader(w, reader_options, {}), pith::argument_error);
}

TEST(loader_bounds, non_finite_and_absurd_hyperparameters_are_rejected_4_1) {
  const double infinity = std::numeric_limits<double>::infinity();
  for (const auto& [key, value] : std::vector<std::pair<std::string, double>>{{"rms_norm_eps", 1e300},
                                                                               {"rms_norm_eps", infinity},
                                                                               {"rms_norm_eps", 2.0},
                                                                               {"rms_norm_eps", 1e-45},
                                                                               {"rope_theta", 1e-45},
                                                                               {"rope_theta", 0.5},
                                                                               {"rope_theta", infinity},
                                                                               {"rope_theta", 1e300}}) {
    auto json = valid();
    json[key] = value;
    const auto message = config_error_of(json);
    EXPECT_TRUE(contains(message, key) && contains(message, "[")) << key << " = " << value << ": " << message;
  }
  for (const float value : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 1e-45f}) {
    const auto message = gguf_error_of(with(gguf_base(), "llama.rope.freq_base", value));
    EXPECT_TRUE(contains(message, "llama.rope.freq_base")) << value << ": " << message;
    const auto eps = gguf_error_of(with(gguf_base(), "llama.attention.layer_norm_rms_epsilon", value));
    EXPECT_TRUE(contains(eps, "llama.attention.layer_norm_rms_epsilon")) << value << ": " << eps;
  }
  EXPECT_EQ(gguf_error_of(gguf_base()), "");
}

// fuzz_model found it: a zero parsed as an unsigned JSON integer skipped the lower bound and
// num_attention_heads 0 divided by zero when head_dim took its default.
TEST(loader_bounds, unsigned_zero_is_below_a_lower_bound_of_one_7) {
  auto json = valid();
  json["num_attention_heads"] = std::uint64_t{0};
  json.erase("head_dim");
  EXPECT_TRUE(contains(config_error_of(json), "num_attention_heads")) << config_error_of(json);
}

TEST(loader_bounds, integer_keys_are_range_and_type_checked_4_4) {
  for (const char* key : {"eos_token_id", "bos_token_id"}) {
    auto json = valid();
    json[key] = (std::uint64_t{1} << 32) + 1;  // 2^32 + 1 is not token 1
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
    json[key] = "2";
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
    json[key] = 100;  // the vocabulary holds ids 0..99
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
    json[key] = -1;
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
  }
  auto json = valid();
  json["eos_token_id"] = 7;
  json["bos_token_id"] = 0;
  auto c = pith::config_from_json(json, "config.json");
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_EQ(c.bos_token_id, 0);
  json["eos_token_id"] = {9, 8};  // Hugging Face lists several end-of-sequence ids
  c = pith::config_from_json(json, "config.json");
  EXPECT_EQ(c.eos_token_id, 9);
  EXPECT_EQ(c.eos_token_ids, (std::vector<std::int32_t>{9, 8}));
  json["eos_token_id"] = {9, "8"};
  EXPECT_TRUE(contains(config_error_of(json), "eos_token_id")) << config_error_of(json);
  for (const char* key : {"hidden_size", "num_hidden_layers", "vocab_size", "head_dim", "num_key_value_heads"}) {
    json = valid();
    json[key] = std::uint64_t{1} << 63;
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
    json[key] = 64.5;
    EXPECT_TRUE(contains(config_error_of(json), key)) << config_error_of(json);
  }
  auto message = gguf_error_of(with(gguf_base(), "tokenizer.ggml.eos_token_id", (std::uint64_t{1} << 32) + 1));
  EXPECT_TRUE(contains(message, "tokenizer.ggml.eos_token_id")) << message;
  message = gguf_error_of(with(gguf_base(), "tokenizer.ggml.bos_token_id", std::int32_t{-1}));
  EXPECT_TRUE(contains(message, "tokenizer.ggml.bos_token_id")) << message;
  message = gguf_error_of(with(gguf_base(), "tokenizer.ggml.eos_token_id", std::string("2")));
  EXPECT_TRUE(contains(message, "tokenizer.ggml.eos_token_id")) << message;
}

TEST(loader_bounds, gguf_errors_name_gguf_keys_4_8) {
  const std::vector<std::pair<std::string, gguf_value>> cases = {
      {"llama.block_count", std::uint32_t{0}},           {"llama.embedding_length", std::uint32_t{0}},
      {"llama.feed_forward_length", std::uint32_t{0}},   {"llama.attention.head_count_kv", std::uint32_t{3}},
      {"llama.block_count", std::uint64_t{1} << 40},     {"llama.vocab_size", std::uint32_t{0}},
      {"llama.context_length", std::uint32_t{0}},        {"llama.attention.key_length", std::uint32_t{7}}};
  for (const auto& [key, value] : cases) {
    const auto message = gguf_error_of(with(gguf_base(), key, value));
    EXPECT_TRUE(contains(message, "'" + key + "'")) << key << ": " << message;
    for (const char* hugging_face : {"num_hidden_layers", "hidden_size", "intermediate_size", "num_key_value_heads",
                                     "'vocab_size'", "max_position_embeddings", "head_dim"})
      EXPECT_FALSE(contains(message, hugging_face)) << key << ": " << message;
  }
}

TEST(loader_bounds, config_json_that_is_a_directory_says_so_4_8) {
  const temp_directory directory;
  std::filesystem::create_directory(directory.path() / "config.json");
  PITH_EXPECT_THROW_WITH(pith::load_config_json(directory.path() / "config.json"), pith::io_error, "is a directory");
  PITH_EXPECT_THROW_WITH(pith::load_model(directory.path()), pith::io_error, "is a directory");
}

/// Nested arrays `depth` deep around 1: [[[...1...]]].
std::string nested(std::size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

TEST(loader_bounds, deeply_nested_config_json_is_rejected_3_4) {
  const temp_directory directory;
  const auto path = directory.path() / "config.json";
  // 100,000 levels: printing it recursively in an error message would overflow the stack.
  write_text(path, R"({"hidden_size": )" + nested(100000) + "}");
  PITH_EXPECT_THROW_WITH(pith::load_config_json(path), pith::config_error, "nest");
  // Shallow but huge values are quoted as a bounded excerpt.
  auto json = valid();
  json["hidden_size"] = nlohmann::json::array();
  for (int i = 0; i < 100000; ++i) json["hidden_size"].push_back(i);
  const auto message = config_error_of(json);
  EXPECT_TRUE(contains(message, "hidden_size")) << message.substr(0, 200);
  constexpr std::size_t longest_message = 400;  // the key, the rule and an excerpt of about 64 characters
  EXPECT_LT(message.size(), longest_message) << message.substr(0, 600);
  // A nesting a configuration may hold still parses.
  json = valid();
  json["quantization_config"] = nlohmann::json::parse(nested(20));
  EXPECT_EQ(config_error_of(json), "");
}

TEST(loader_bounds, deeply_nested_safetensors_header_is_rejected_3_4) {
  const pith_test::temp_file file(".safetensors");
  const std::string header = R"({"w": {"dtype": "F32", "shape": )" + nested(100000) + R"(, "data_offsets": [0, 4]}})";
  std::string bytes;
  pith::detail::append_little_endian<std::uint64_t>(bytes, header.size());
  file.write(bytes + header + std::string(4, '\0'));
  PITH_EXPECT_THROW_WITH(pith::safetensors_file{file.path()}, pith::format_error, "nest");
}

/// Copies a safetensors model directory, with `edit` applied to its config.json and `extra`
/// tensors added to its checkpoint.
void copy_model(const std::filesystem::path& from, const std::filesystem::path& to,
                const std::function<void(nlohmann::json&)>& edit, const std::vector<pith::safetensors_entry>& extra = {}) {
  nlohmann::json config = nlohmann::json::parse(pith_test::read_file(from / "config.json"));
  edit(config);
  write_text(to / "config.json", config.dump());
  const pith::safetensors_file source(from / "model.safetensors");
  std::vector<std::vector<std::byte>> storage;
  std::vector<pith::safetensors_entry> entries;
  for (const auto& name : source.names()) {
    const auto tensor = source.tensor(name);
    storage.emplace_back(tensor.bytes.begin(), tensor.bytes.end());
    entries.push_back({name, std::string(tensor.dtype_name), tensor.shape, storage.back()});
  }
  entries.insert(entries.end(), extra.begin(), extra.end());
  pith::write_safetensors(to / "model.safetensors", entries);
}

TEST(loader_bounds, tensors_no_layer_uses_are_an_error_4_3) {
  const auto original = std::filesystem::path(PITH_TEST_DATA_DIR) / "llama" / "gqa_untied";
  const temp_directory directory;
  copy_model(original, directory.path(), [](nlohmann::json& c) { c["num_hidden_layers"] = 2; });
  PITH_EXPECT_THROW_WITH(pith::load_model(directory.path()), pith::format_error, "model.layers.2.");
  // Rotary inverse frequencies (old Hugging Face exports) are recomputed from rope_theta: harmless.
  const std::vector<float> inv_freq(4, 1.0f);
  const temp_directory with_buffer;
  copy_model(original, with_buffer.path(), [](nlohmann::json&) {},
             {pith::f32_entry("model.layers.0.self_attn.rotary_emb.inv_freq", {4}, inv_freq)});
  EXPECT_NO_THROW(pith::load_model(with_buffer.path()));
  // Anything else is not.
  const temp_directory with_other;
  copy_model(original, with_other.path(), [](nlohmann::json&) {},
             {pith::f32_entry("model.layers.0.self_attn.q_norm.weight", {4}, inv_freq)});
  PITH_EXPECT_THROW_WITH(pith::load_model(with_other.path()), pith::format_error, "q_norm");
}

/// A 1-layer GGUF llama (hidden 4, 2 heads of 2, 1 KV head, FFN 4, vocabulary 4) with `extra`
/// F32 vectors of 4 added after its tensors.
std::string tiny_gguf_model(const std::vector<std::string>& extra) {
  gguf_metadata metadata = with(with(with(with(with(gguf_base(), "llama.embedding_length", std::uint32_t{4}),
                                                "llama.feed_forward_length", std::uint32_t{4}),
                                           "llama.block_count", std::uint32_t{1}),
                                      "llama.attention.head_count", std::uint32_t{2}),
                                 "llama.vocab_size", std::uint32_t{4});
  metadata = with(metadata, "llama.attention.head_count_kv", std::uint32_t{1});
  std::vector<std::pair<std::string, std::vector<std::uint64_t>>> tensors = {
      {"token_embd.weight", {4, 4}},    {"blk.0.attn_norm.weight", {4}},   {"blk.0.attn_q.weight", {4, 4}},
      {"blk.0.attn_k.weight", {4, 2}},  {"blk.0.attn_v.weight", {4, 2}},   {"blk.0.attn_output.weight", {4, 4}},
      {"blk.0.ffn_norm.weight", {4}},   {"blk.0.ffn_gate.weight", {4, 4}}, {"blk.0.ffn_up.weight", {4, 4}},
      {"blk.0.ffn_down.weight", {4, 4}}, {"output_norm.weight", {4}}};
  for (const auto& name : extra) tensors.push_back({name, {4}});
  pith_test::gguf_builder builder;
  builder.header(tensors.size(), metadata.size());
  const std::string meta = gguf_bytes(metadata);
  builder.data(std::string_view(meta).substr(24));  // the key/value pairs after gguf_bytes' own header
  std::uint64_t offset = 0;
  std::string data;
  for (const auto& [name, ne] : tensors) {
    std::uint64_t count = 1;
    for (const auto n : ne) count *= n;
    builder.tensor_info(name, ne, 0, offset);
    std::string bytes = pith_test::le_bytes(std::vector<float>(count, 0.5f));
    bytes.append((32 - bytes.size() % 32) % 32, '\0');
    offset += bytes.size();
    data += bytes;
  }
  builder.align();
  builder.data(data);
  return builder.bytes();
}

TEST(loader_bounds, gguf_tensors_no_layer_uses_are_an_error_4_3) {
  const pith_test::temp_file plain(".gguf");
  plain.write(tiny_gguf_model({}));
  EXPECT_NO_THROW(pith::load_model(plain.path()));
  const pith_test::temp_file with_rope_factors(".gguf");
  // Llama 3 frequency divisors are read, and must have head_dim / 2 entries (this model's head_dim is 2).
  with_rope_factors.write(tiny_gguf_model({"rope_freqs.weight"}));
  PITH_EXPECT_THROW_WITH(pith::load_model(with_rope_factors.path()), pith::shape_error, "rope_freqs.weight");
  const pith_test::temp_file with_second_layer(".gguf");
  with_second_layer.write(tiny_gguf_model({"blk.1.attn_norm.weight"}));
  PITH_EXPECT_THROW_WITH(pith::load_model(with_second_layer.path()), pith::format_error, "llama.block_count = 1");
}

TEST(loader_bounds, every_shipped_checkpoint_loads_4_3) {
  const std::filesystem::path source_dir = std::filesystem::path(PITH_TEST_DATA_DIR) / ".." / "..";
  std::vector<std::filesystem::path> models;
  for (const auto& root : {source_dir / "tests" / "data", source_dir / "examples" / "models",
                           std::filesystem::path(PITH_SHARED_MODELS_DIR)}) {
    if (!std::filesystem::exists(root)) continue;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
      const auto& path = entry.path();
      const auto name = path.filename().string();
      // tests/data/quant holds raw block vectors (.bin) and the shared config.json of its quantized
      // goldens: only its GGUF files are models.
      if (path.string().find("tests/data/quant/") != std::string::npos && path.extension() != ".gguf") continue;
      if (name == "config.json") models.push_back(path.parent_path());
      // .bin files are llama2.c checkpoints unless they are tokenizers (tok512.bin, tokenizer.bin) or
      // the quantization test vectors (raw blocks and rows in tests/data/quant/blocks and quantize).
      const auto folder = path.parent_path().filename();
      const bool vectors = folder == "blocks" || folder == "quantize";
      if (path.extension() == ".bin" && name.rfind("tok", 0) != 0 && !vectors) models.push_back(path);
      // GGUF files with tensors are models; the ggml-vocab files hold only a vocabulary.
      if (path.extension() == ".gguf" && pith::gguf_file(path).tensor_count() > 0) models.push_back(path);
    }
  }
  EXPECT_GE(models.size(), 20u);
  for (const auto& model : models) {
    SCOPED_TRACE(model.string());
    EXPECT_NO_THROW(pith::load_model(model));
  }
}

/// Runs `load` on another thread and expects it to throw io_error containing `needle` instead of
/// blocking on `fifo`. If it blocks, the test fails and the FIFO is opened for writing so the
/// blocked open returns and the thread can finish.
void expect_no_block_on_fifo(const std::filesystem::path& fifo, const std::function<void()>& load,
                             const std::string& needle) {
  auto result = std::async(std::launch::async, [&]() -> std::string {
    try {
      load();
    } catch (const pith::io_error& e) {
      return e.what();
    } catch (const std::exception& e) {
      return std::string("wrong exception: ") + e.what();
    }
    return "no exception";
  });
  // A loader that checks the file type returns at once; one that blocks in open() never does.
  constexpr auto patience = std::chrono::seconds(20);
  if (result.wait_for(patience) != std::future_status::ready) {
    ADD_FAILURE() << fifo << ": the loader blocked on the FIFO";
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
  }
  const std::string message = result.get();
  EXPECT_TRUE(contains(message, needle)) << fifo << ": " << message;
}

TEST(loader_bounds, fifo_model_or_tokenizer_is_rejected_without_blocking_3_6) {
  const temp_directory directory;
  const auto gguf = directory.path() / "f.gguf", bin = directory.path() / "f.bin", words = directory.path() / "w.json";
  for (const auto& path : {gguf, bin, words}) ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
  expect_no_block_on_fifo(gguf, [&] { pith::load_model(gguf); }, "FIFO");
  expect_no_block_on_fifo(bin, [&] { pith::load_model(bin); }, "FIFO");
  expect_no_block_on_fifo(bin, [&] { pith::tokenizer::load_llama2c(bin, 32); }, "FIFO");
  expect_no_block_on_fifo(words, [&] { pith::tokenizer::load_words(words); }, "FIFO");
  const temp_directory model;
  ASSERT_EQ(::mkfifo((model.path() / "config.json").c_str(), 0600), 0);
  expect_no_block_on_fifo(model.path() / "config.json", [&] { pith::load_model(model.path()); }, "FIFO");
}

}  // namespace

namespace family_config {

nlohmann::json family_json(const char* architecture) {
  auto json = valid();
  json["architectures"] = {architecture};
  return json;
}

pith::model_config parse(const nlohmann::json& json) { return pith::config_from_json(json, "config.json"); }

TEST(FamilyConfig, ArchitecturesChooseTheFamily) {
  EXPECT_EQ(parse(family_json("LlamaForCausalLM")).family, pith::model_family::llama);
  EXPECT_EQ(parse(family_json("MistralForCausalLM")).family, pith::model_family::mistral);
  const auto qwen2 = parse(family_json("Qwen2ForCausalLM"));
  EXPECT_TRUE(qwen2.attention_bias);
  EXPECT_FALSE(qwen2.qk_norm);
  const auto qwen3 = parse(family_json("Qwen3ForCausalLM"));
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.attention_bias);
  auto gemma_json = family_json("Gemma3ForCausalLM");
  gemma_json["sliding_window"] = 16;
  gemma_json["num_hidden_layers"] = 7;
  gemma_json.erase("tie_word_embeddings");
  const auto gemma = parse(gemma_json);
  EXPECT_TRUE(gemma.sandwich_norms && gemma.norm_plus_one && gemma.qk_norm && gemma.tie_word_embeddings);
  EXPECT_EQ(gemma.activation, pith::ffn_activation::gelu_tanh);
  EXPECT_FLOAT_EQ(gemma.attention_scale, 1.0f / 16.0f);  // query_pre_attn_scalar defaults to 256
  EXPECT_FLOAT_EQ(gemma.rope_theta_windowed, 10000.0f);
  for (std::size_t l = 0; l < 7; ++l) EXPECT_EQ(gemma.sliding_window(l), l == 5 ? 0u : 16u) << l;
  // Qwen: layers from max_window_layers on slide when use_sliding_window (released configs: false).
  auto qwen_json = family_json("Qwen2ForCausalLM");
  qwen_json["sliding_window"] = 32;
  qwen_json["max_window_layers"] = 1;
  EXPECT_FALSE(parse(qwen_json).has_sliding_windows());
  qwen_json["use_sliding_window"] = true;
  const auto sliding = parse(qwen_json);
  EXPECT_EQ(sliding.sliding_window(0), 0u);
  EXPECT_EQ(sliding.sliding_window(1), 32u);
}

TEST(FamilyConfig, UnsupportedArchitecturesAndKeysAreRefusedByName) {
  const auto refused = [](const nlohmann::json& json, const char* needle) {
    try {
      parse(json);
    } catch (const pith::config_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted: " << json.dump();
  };
  refused(family_json("Gemma3ForConditionalGeneration"), "text_config");  // its text model's keys are missing
  refused(family_json("MixtralForCausalLM"), "MixtralForCausalLM");
  auto json = valid();
  json["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  refused(json, "yarn");
  json["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};  // low/high factors missing
  refused(json, "rope_scaling.low_freq_factor");
  json["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // linear: Gemma 3 only
  refused(json, "rope_scaling");
  json = family_json("Gemma3ForCausalLM");
  json["sliding_window"] = 8;
  json["final_logit_softcapping"] = 30.0;
  refused(json, "final_logit_softcapping");
  json = family_json("Qwen3ForCausalLM");
  json["attention_bias"] = true;
  refused(json, "attention_bias");
  json = family_json("Gemma3ForCausalLM");  // sliding layers without a window
  refused(json, "sliding_window");
  json = valid();
  json["partial_rotary_factor"] = 0.5;
  refused(json, "partial_rotary_factor");
}

TEST(FamilyConfig, Llama3RopeScalingMatchesTheShippedDivisors) {
  // notes/model_families.md §1.3: Llama 3.2 1B (theta 5e5, head_dim 64, factor 32) divides pairs
  // 13..19 by 1, 1, 1.651329, 3.292262, 9.666729, 32, 32 (llama.cpp's rope_freqs.weight).
  pith::rope_scaling scaling;
  scaling.kind = pith::rope_scaling_kind::llama3;
  scaling.factor = 32.0f;
  scaling.low_freq_factor = 1.0f;
  scaling.high_freq_factor = 4.0f;
  scaling.original_max_position_embeddings = 8192.0f;
  const auto base = pith::rope_frequencies(500000.0f, 64, {});
  const auto scaled = pith::rope_frequencies(500000.0f, 64, scaling);
  const float expected[] = {1.0f, 1.0f, 1.651329f, 3.292262f, 9.666729f, 32.0f, 32.0f};
  for (std::size_t i = 0; i < 7; ++i) EXPECT_NEAR(base[13 + i] / scaled[13 + i], expected[i], 1e-5f) << 13 + i;
}

TEST(FamilyConfig, GgufArchitecturesChooseTheFamily) {
  auto qwen3 = gguf_metadata{{"general.architecture", std::string("qwen3")},
                             {"qwen3.embedding_length", std::uint32_t{64}},
                             {"qwen3.feed_forward_length", std::uint32_t{128}},
                             {"qwen3.block_count", std::uint32_t{2}},
                             {"qwen3.attention.head_count", std::uint32_t{4}},
                             {"qwen3.attention.head_count_kv", std::uint32_t{2}},
                             {"qwen3.attention.key_length", std::uint32_t{32}},
                             {"qwen3.vocab_size", std::uint32_t{100}}};
  EXPECT_EQ(gguf_error_of(qwen3), "");
  // Errors name the keys with the file's own prefix.
  EXPECT_TRUE(contains(gguf_error_of(with(qwen3, "qwen3.block_count", std::uint64_t{1} << 62)), "qwen3.block_count"));
  EXPECT_TRUE(contains(gguf_error_of(with(qwen3, "general.architecture", std::string("phi3"))), "'phi3'"));
  EXPECT_TRUE(contains(gguf_error_of(with(qwen3, "qwen3.rope.scaling.type", std::string("yarn"))), "yarn"));
}

}  // namespace family_config
