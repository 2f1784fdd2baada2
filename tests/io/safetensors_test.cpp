// SPDX-License-Identifier: MIT
// Tests of the safetensors reader and writer: round trip, conversions, and every corruption we could think of.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <pith/io/safetensors.hpp>

#include "test_util.hpp"

namespace {

using pith_test::temp_file;

// A safetensors file from a header text and data bytes; `declared_length` overrides the length field.
std::string safetensors_bytes(const std::string& header, const std::string& data,
                              std::optional<std::uint64_t> declared_length = std::nullopt) {
  std::string out;
  pith::detail::append_little_endian<std::uint64_t>(out, declared_length.value_or(header.size()));
  return out + header + data;
}

TEST(Safetensors, WriterRoundTripsF32TensorsAndMetadata) {
  const temp_file file(".safetensors");
  const std::vector<float> matrix = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-30f};
  const std::vector<float> scalar = {42.0f};
  const std::vector<float> none;
  const std::vector<pith::safetensors_entry> entries = {
      pith::f32_entry("model.layers.0.weight", {2, 3}, matrix),
      pith::f32_entry("scale", {}, scalar),
      pith::f32_entry("empty", {0, 4}, none),
  };
  pith::write_safetensors(file.path(), entries, {{"format", "pt"}, {"note", "pith test"}});

  const pith::safetensors_file reader(file.path());
  EXPECT_EQ(reader.size(), 3u);
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"empty", "model.layers.0.weight", "scale"}));
  EXPECT_TRUE(reader.contains("scale"));
  EXPECT_FALSE(reader.contains("missing"));
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.metadata().at("note"), "pith test");
  const std::uint64_t header_length = pith::detail::load_little_endian<std::uint64_t>(
      reinterpret_cast<const std::byte*>(pith_test::read_file(file.path()).data()));
  EXPECT_EQ(header_length % 8, 0u) << "the data area starts 8-byte aligned";

  const pith::file_tensor weight = reader.tensor("model.layers.0.weight");
  EXPECT_EQ(weight.name, "model.layers.0.weight");
  EXPECT_EQ(weight.dtype, pith::element_type::f32);
  EXPECT_EQ(weight.dtype_name, "F32");
  EXPECT_EQ(weight.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(weight.element_count(), 6);
  EXPECT_EQ(weight.bytes.size(), 24u);
  EXPECT_EQ(weight.file, file.string());
  const std::vector<float> values = pith::to_float(weight);
  ASSERT_EQ(values.size(), matrix.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(std::bit_cast<std::uint32_t>(values[i]), std::bit_cast<std::uint32_t>(matrix[i])) << i;

  pith::aligned_buffer<float> aligned;
  pith::to_float(reader.tensor("scale"), aligned);
  ASSERT_EQ(aligned.size(), 1u);
  EXPECT_EQ(aligned[0], 42.0f);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned.data()) % pith::buffer_alignment, 0u);
  EXPECT_EQ(reader.tensor("scale").shape.size(), 0u);

  const pith::file_tensor empty = reader.tensor("empty");
  EXPECT_EQ(empty.element_count(), 0);
  EXPECT_TRUE(pith::to_float(empty).empty());
}

TEST(Safetensors, HalfAndBFloat16TensorsConvertExactly) {
  const temp_file file(".safetensors");
  // 1, -2, smallest subnormal, largest subnormal, smallest normal, 65504, +inf, -inf, NaN, -0.
  const std::vector<std::uint16_t> halves = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400,
                                             0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000};
  // 1, -2, smallest subnormal, 2^-126, 3.0, +inf, -inf, NaN.
  const std::vector<std::uint16_t> bfloats = {0x3f80, 0xc000, 0x0001, 0x0080, 0x4040, 0x7f80, 0xff80, 0x7fc0};
  const std::vector<pith::safetensors_entry> entries = {
      {"h", "F16", {2, 5}, std::as_bytes(std::span(halves))},
      {"b", "BF16", {8}, std::as_bytes(std::span(bfloats))},
  };
  pith::write_safetensors(file.path(), entries);
  const pith::safetensors_file reader(file.path());

  const auto h = pith::to_float(reader.tensor("h"));
  EXPECT_EQ(reader.tensor("h").dtype, pith::element_type::f16);
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> expected_h = {
      1.0f, -2.0f, std::ldexp(1.0f, -24), std::ldexp(1023.0f, -24), std::ldexp(1.0f, -14), 65504.0f, inf, -inf};
  ASSERT_EQ(h.size(), 10u);
  for (std::size_t i = 0; i < expected_h.size(); ++i) EXPECT_EQ(h[i], expected_h[i]) << i;
  EXPECT_TRUE(std::isnan(h[8]));
  EXPECT_EQ(std::bit_cast<std::uint32_t>(h[9]), 0x80000000u);

  const auto b = pith::to_float(reader.tensor("b"));
  EXPECT_EQ(reader.tensor("b").dtype, pith::element_type::bf16);
  const std::vector<float> expected_b = {1.0f, -2.0f, std::bit_cast<float>(0x00010000u), std::ldexp(1.0f, -126), 3.0f,
                                         inf,  -inf};
  ASSERT_EQ(b.size(), 8u);
  for (std::size_t i = 0; i < expected_b.size(); ++i) EXPECT_EQ(b[i], expected_b[i]) << i;
  EXPECT_TRUE(std::isnan(b[7]));
}

TEST(Safetensors, OtherDtypesCanBeViewedButNotConverted) {
  const temp_file file(".safetensors");
  const std::vector<std::int64_t> ids = {1, 2, 3};
  pith::write_safetensors(file.path(), std::vector<pith::safetensors_entry>{
                                           {"position_ids", "I64", {1, 3}, std::as_bytes(std::span(ids))}});
  const pith::safetensors_file reader(file.path());
  const auto tensor = reader.tensor("position_ids");
  EXPECT_EQ(tensor.dtype, pith::element_type::other);
  EXPECT_EQ(tensor.dtype_name, "I64");
  EXPECT_EQ(tensor.bytes.size(), 24u);
  PITH_EXPECT_THROW_WITH(pith::to_float(tensor), pith::format_error, "position_ids");
  PITH_EXPECT_THROW_WITH(pith::to_float(tensor), pith::format_error, "I64");
  PITH_EXPECT_THROW_WITH(pith::to_float(tensor), pith::format_error, file.name());
}

TEST(Safetensors, ToFloatIntoASpanOfTheWrongSizeIsAShapeError) {
  const temp_file file(".safetensors");
  const std::vector<float> values = {1, 2, 3};
  pith::write_safetensors(file.path(), std::vector<pith::safetensors_entry>{pith::f32_entry("v", {3}, values)});
  const pith::safetensors_file reader(file.path());
  std::vector<float> out(2);
  PITH_EXPECT_THROW_WITH(pith::to_float(reader.tensor("v"), std::span<float>(out)), pith::shape_error, "'v'");
}

TEST(Safetensors, MissingTensorNamesFileAndTensor) {
  const temp_file file(".safetensors");
  const std::vector<float> values = {1};
  pith::write_safetensors(file.path(), std::vector<pith::safetensors_entry>{pith::f32_entry("present", {1}, values)});
  const pith::safetensors_file reader(file.path());
  PITH_EXPECT_THROW_WITH(reader.tensor("model.norm.weight"), pith::format_error, "model.norm.weight");
  PITH_EXPECT_THROW_WITH(reader.tensor("model.norm.weight"), pith::format_error, file.name());
}

TEST(Safetensors, MissingFileIsAnIoError) {
  const temp_file file(".safetensors");
  PITH_EXPECT_THROW_WITH(pith::safetensors_file{file.path()}, pith::io_error, file.name());
}

TEST(Safetensors, MetadataIsIgnoredAsATensor) {
  const temp_file file(".safetensors");
  file.write(
      safetensors_bytes(R"({"__metadata__":{"a":"b","n":3},"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                        std::string(4, '\0')));
  const pith::safetensors_file reader(file.path());
  EXPECT_EQ(reader.names(), std::vector<std::string>{"t"});
  EXPECT_EQ(reader.metadata().size(), 1u);  // the non-string value is skipped
}

struct corruption {
  const char* what;
  std::string bytes;
  const char* needle;  // besides the file name, the message must contain this
};

TEST(Safetensors, EveryCorruptionIsAFormatErrorNamingTheFile) {
  const std::string valid_header = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  const std::string data16(16, '\x01');
  const auto with_entry = [](const std::string& entry) { return std::string(R"({"w":)") + entry + "}"; };
  const std::vector<corruption> cases = {
      {"empty file", "", "too short"},
      {"truncated header length", std::string("\x10\x00\x00", 3), "too short"},
      {"header length beyond the file", safetensors_bytes(valid_header, data16, 1000), "exceeds"},
      {"header length near 2^64", safetensors_bytes(valid_header, data16, ~0ull), "exceeds"},
      {"header length cuts the JSON", safetensors_bytes(valid_header, data16, 20), "not valid JSON"},
      {"bad JSON", safetensors_bytes(R"({"w": {"dtype": "F32", )", ""), "not valid JSON"},
      {"zero header length", safetensors_bytes("", data16), "not valid JSON"},
      {"JSON is not an object", safetensors_bytes("[1, 2, 3]", ""), "not a JSON object"},
      {"entry is not an object", safetensors_bytes(with_entry("7"), data16), "'w'"},
      {"missing dtype", safetensors_bytes(with_entry(R"({"shape":[2,2],"data_offsets":[0,16]})"), data16), "dtype"},
      {"dtype not a string",
       safetensors_bytes(with_entry(R"({"dtype":1,"shape":[2,2],"data_offsets":[0,16]})"), data16), "dtype"},
      {"unknown dtype", safetensors_bytes(with_entry(R"({"dtype":"Q4","shape":[2,2],"data_offsets":[0,16]})"), data16),
       "'Q4'"},
      {"missing shape", safetensors_bytes(with_entry(R"({"dtype":"F32","data_offsets":[0,16]})"), data16), "shape"},
      {"negative extent",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]})"), data16), "shape"},
      {"fractional extent",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2.5,2],"data_offsets":[0,16]})"), data16), "shape"},
      {"extent beyond int64",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,16]})"), data16),
       "shape"},
      {"element count overflows",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]})"),
                         data16),
       "63 bits"},
      {"byte count overflows",
       safetensors_bytes(with_entry(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,16]})"), data16),
       "too large"},
      {"missing data_offsets", safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2,2]})"), data16),
       "data_offsets"},
      {"three data_offsets",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,8,16]})"), data16),
       "data_offsets"},
      {"negative offset",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2,2],"data_offsets":[-4,12]})"), data16),
       "data_offsets"},
      {"end beyond the data area",
       safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2,2],"data_offsets":[4,20]})"), data16), "outside"},
      {"begin after end", safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})"), data16),
       "outside"},
      {"size mismatch", safetensors_bytes(with_entry(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})"), data16),
       "needs 16"},
      {"size mismatch F16",
       safetensors_bytes(with_entry(R"({"dtype":"F16","shape":[2,2],"data_offsets":[0,16]})"), data16), "needs 8"},
      {"data area truncated", safetensors_bytes(valid_header, std::string(15, '\0')), "outside"},
      {"overlapping tensors",
       safetensors_bytes(
           R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           data16),
       "overlap"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const temp_file file(".safetensors");
    file.write(c.bytes);
    PITH_EXPECT_THROW_WITH(pith::safetensors_file{file.path()}, pith::format_error, file.name());
    PITH_EXPECT_THROW_WITH(pith::safetensors_file{file.path()}, pith::format_error, c.needle);
  }
}

TEST(Safetensors, EveryTruncationOfAValidFileIsAFormatError) {
  const temp_file source(".safetensors");
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<float> b = {7, 8};
  pith::write_safetensors(source.path(), std::vector<pith::safetensors_entry>{pith::f32_entry("a", {2, 3}, a),
                                                                              pith::f32_entry("b", {2}, b)});
  const std::string bytes = pith_test::read_file(source.path());
  const temp_file file(".safetensors");
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    SCOPED_TRACE(length);
    file.write(std::string_view(bytes).substr(0, length));
    EXPECT_THROW(pith::safetensors_file{file.path()}, pith::format_error);
  }
}

TEST(Safetensors, WriterRejectsInconsistentEntries) {
  const temp_file file(".safetensors");
  const std::vector<float> three = {1, 2, 3};
  using entries = std::vector<pith::safetensors_entry>;
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("x", {2, 2}, three)}),
               pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("", {3}, three)}), pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("__metadata__", {3}, three)}),
               pith::argument_error);
  EXPECT_THROW(
      pith::write_safetensors(file.path(), entries{pith::f32_entry("x", {3}, three), pith::f32_entry("x", {3}, three)}),
      pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{{"x", "Q8", {3}, std::as_bytes(std::span(three))}}),
               pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("x", {-3}, three)}), pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("bad\xC3", {3}, three)}),
               pith::argument_error);
  EXPECT_THROW(pith::write_safetensors(file.path(), entries{pith::f32_entry("x", {3}, three)}, {{"k", "\xED\xA0\x80"}}),
               pith::argument_error);  // an encoded surrogate
}

}  // namespace
