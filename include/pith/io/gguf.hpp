// SPDX-License-Identifier: MIT
// GGUF v3 reader (llama.cpp's format): metadata of every value type, tensor infos, memory-mapped data.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "pith/core/dtype.hpp"
#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/file_tensor.hpp"
#include "pith/io/mmap.hpp"

namespace pith {

/// GGUF metadata value types; the numbers are the file's type ids.
enum class gguf_type : std::uint32_t {
  uint8 = 0,
  int8 = 1,
  uint16 = 2,
  int16 = 3,
  uint32 = 4,
  int32 = 5,
  float32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  uint64 = 10,
  int64 = 11,
  float64 = 12,
};

inline std::string_view gguf_type_name(gguf_type type) noexcept {
  static constexpr std::string_view names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                               "bool",  "string", "array",  "uint64", "int64",  "float64"};
  const auto index = static_cast<std::uint32_t>(type);
  return index < std::size(names) ? names[index] : std::string_view("unknown");
}

/// A GGUF array: one std::vector of the element type. Arrays of arrays are rejected when reading
/// (llama.cpp does not write them either).
struct gguf_array {
  // Alternative i holds element type i for i < 9 and element type i + 1 above (9 is `array`).
  using storage = std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>, std::vector<std::uint16_t>,
                               std::vector<std::int16_t>, std::vector<std::uint32_t>, std::vector<std::int32_t>,
                               std::vector<float>, std::vector<bool>, std::vector<std::string>,
                               std::vector<std::uint64_t>, std::vector<std::int64_t>, std::vector<double>>;
  storage values;

  gguf_type element_type() const noexcept {
    const auto index = static_cast<std::uint32_t>(values.index());
    return static_cast<gguf_type>(index < 9 ? index : index + 1);
  }
  std::size_t size() const noexcept {
    return std::visit([](const auto& elements) { return elements.size(); }, values);
  }
  /// The elements if they are of type T, else nullptr.
  template <class T>
  const std::vector<T>* get_if() const noexcept {
    return std::get_if<std::vector<T>>(&values);
  }
};

/// A GGUF metadata value; the variant index equals the file's type id.
using gguf_value = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t, std::uint32_t, std::int32_t,
                                float, bool, std::string, gguf_array, std::uint64_t, std::int64_t, double>;

inline gguf_type type_of(const gguf_value& value) noexcept { return static_cast<gguf_type>(value.index()); }

/// "uint32", "array of string", ...
inline std::string describe_type(const gguf_value& value) {
  if (const auto* array = std::get_if<gguf_array>(&value))
    return "array of " + std::string(gguf_type_name(array->element_type()));
  return std::string(gguf_type_name(type_of(value)));
}

namespace detail {
template <class T, class Variant>
struct alternative_index;
template <class T, class... Alternatives>
struct alternative_index<T, std::variant<Alternatives...>> {
  static constexpr std::size_t value = [] {
    constexpr bool same[] = {std::is_same_v<T, Alternatives>...};
    for (std::size_t i = 0; i < sizeof...(Alternatives); ++i)
      if (same[i]) return i;
    return sizeof...(Alternatives);
  }();
};
}  // namespace detail

/// The gguf_type whose C++ representation is T.
template <class T>
constexpr gguf_type gguf_type_of() noexcept {
  constexpr std::size_t index = detail::alternative_index<T, gguf_value>::value;
  static_assert(index < std::variant_size_v<gguf_value>, "not a GGUF value type");
  return static_cast<gguf_type>(index);
}

/// Storage layout of a ggml tensor type: `block_size` elements take `block_bytes` bytes.
struct ggml_type_info {
  std::uint32_t id;
  std::string_view name;
  std::uint32_t block_size;
  std::uint32_t block_bytes;
  element_type dtype;  // f32/f16/bf16 for the types to_float converts, else other
};

/// The ggml types a GGUF file may hold (ids as in ggml.h; 4, 5 and 31-33 are retired); nullptr
/// for an unknown id. Block sizes are the C structs' (note §1.1: Q8_1 is 36 bytes, f16 d and s;
/// gguf-py's table says 40). gguf_file accepts the types pith has a dtype for (supported_gguf_types)
/// and names the others when it refuses them.
inline const ggml_type_info* find_ggml_type(std::uint32_t id) noexcept {
  static constexpr ggml_type_info table[] = {
      {0, "F32", 1, 4, element_type::f32},           {1, "F16", 1, 2, element_type::f16},
      {2, "Q4_0", 32, 18, element_type::other},      {3, "Q4_1", 32, 20, element_type::other},
      {6, "Q5_0", 32, 22, element_type::other},      {7, "Q5_1", 32, 24, element_type::other},
      {8, "Q8_0", 32, 34, element_type::other},      {9, "Q8_1", 32, 36, element_type::other},
      {10, "Q2_K", 256, 84, element_type::other},    {11, "Q3_K", 256, 110, element_type::other},
      {12, "Q4_K", 256, 144, element_type::other},   {13, "Q5_K", 256, 176, element_type::other},
      {14, "Q6_K", 256, 210, element_type::other},   {15, "Q8_K", 256, 292, element_type::other},
      {16, "IQ2_XXS", 256, 66, element_type::other}, {17, "IQ2_XS", 256, 74, element_type::other},
      {18, "IQ3_XXS", 256, 98, element_type::other}, {19, "IQ1_S", 256, 50, element_type::other},
      {20, "IQ4_NL", 32, 18, element_type::other},   {21, "IQ3_S", 256, 110, element_type::other},
      {22, "IQ2_S", 256, 82, element_type::other},   {23, "IQ4_XS", 256, 136, element_type::other},
      {24, "I8", 1, 1, element_type::other},         {25, "I16", 1, 2, element_type::other},
      {26, "I32", 1, 4, element_type::other},        {27, "I64", 1, 8, element_type::other},
      {28, "F64", 1, 8, element_type::other},        {29, "IQ1_M", 256, 56, element_type::other},
      {30, "BF16", 1, 2, element_type::bf16},        {34, "TQ1_0", 256, 54, element_type::other},
      {35, "TQ2_0", 256, 66, element_type::other},   {39, "MXFP4", 32, 17, element_type::other},
  };
  for (const auto& info : table)
    if (info.id == id) return &info;
  return nullptr;
}

/// "F32, F16, BF16, Q4_0, ...": the ggml types gguf_file accepts, for error messages. Q8_1 and Q8_K
/// are activation formats (note §1.1) and are refused in files like any type pith lacks.
inline std::string supported_gguf_types() {
  std::string list;
  for (const dtype t : all_dtypes)
    if (!dtype_is_activation_only(t)) list += (list.empty() ? "" : ", ") + std::string(dtype_name(t));
  return list;
}

/// One entry of the tensor-info table.
struct gguf_tensor_info {
  std::string name;
  /// Extents in GGUF/ggml order: ne[0] is the contiguous (fastest-varying) one, i.e. the row length.
  std::vector<std::int64_t> ne;
  std::uint32_t type = 0;       // ggml type id
  dtype storage = dtype::f32;   // pith's type for `type` (the reader refuses ids without one)
  std::uint64_t offset = 0;     // from the start of the data section, a multiple of the alignment
  std::uint64_t byte_size = 0;  // product(ne) / block_size × block_bytes

  /// Row-major extents (ne reversed): a matrix with ne = {n_embd, n_vocab} has shape {n_vocab, n_embd},
  /// the [out_features, in_features] order of PyTorch and safetensors.
  std::vector<std::int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }
};

/// A memory-mapped GGUF v3 file. The constructor reads the header, every metadata key/value and
/// the tensor-info table, checking each count, length and offset against the bytes that remain
/// before reading it, so a truncated or corrupt file throws format_error naming the file (never
/// a crash or an allocation larger than a small multiple of the file size). io_error when the
/// file cannot be read.
///
/// Tensor types: every type pith has a dtype for (F32, F16, BF16 and the block-quantized types of
/// core/dtype.hpp); any other ggml type, and the activation-only Q8_1 and Q8_K, is refused with a
/// format_error naming the file, the tensor and the type. Each tensor's row length (ne[0]) must be
/// a whole number of blocks and its bytes must lie inside the file (note §6).
///
/// Shapes: gguf_tensor_info::ne is the file's order (fastest first); file_tensor::shape and
/// gguf_tensor_info::shape() are row-major (outermost first), like safetensors. Tensor data is
/// neither transposed nor permuted: Q/K projections of models converted from Hugging Face by
/// llama.cpp are stored with their rows permuted for the adjacent-pair RoPE layout, while models
/// converted from llama2.c (already adjacent-pair) hold llama2.c's bytes unchanged (tested on
/// stories260K).
///
/// Metadata getters throw config_error naming the file and the key when the key is missing or
/// holds another type; they never convert between types (get_integer accepts every integer type).
class gguf_file {
 public:
  static constexpr std::uint32_t supported_version = 3;
  static constexpr std::uint32_t default_alignment = 32;
  static constexpr std::uint32_t max_dims = 4;

  explicit gguf_file(const std::filesystem::path& path) : file_(path) { parse(); }

  const std::string& path() const noexcept { return file_.path(); }
  std::uint32_t version() const noexcept { return supported_version; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  /// Absolute file offset of the data section.
  std::uint64_t data_offset() const noexcept { return data_offset_; }

  // ---- metadata -------------------------------------------------------------------------------

  /// Key/value pairs in file order.
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const noexcept { return metadata_; }
  bool has(std::string_view key) const { return key_index_.find(key) != key_index_.end(); }

  const gguf_value& get(std::string_view key) const {
    const auto found = key_index_.find(key);
    if (found == key_index_.end())
      PITH_THROW(config_error, path() + ": metadata key " + detail::quoted(key) + " is missing");
    return metadata_[found->second].second;
  }

  /// The value of `key`, which must have exactly the GGUF type of T.
  template <class T>
  const T& get_as(std::string_view key) const {
    const gguf_value& value = get(key);
    if (const T* typed = std::get_if<T>(&value)) return *typed;
    wrong_type(key, value, std::string(gguf_type_name(gguf_type_of<T>())));
  }
  /// The value of `key` if present (type-checked like get_as), else `fallback`.
  template <class T>
  T get_or(std::string_view key, T fallback) const {
    return has(key) ? get_as<T>(key) : fallback;
  }

  std::uint8_t get_uint8(std::string_view key) const { return get_as<std::uint8_t>(key); }
  std::int8_t get_int8(std::string_view key) const { return get_as<std::int8_t>(key); }
  std::uint16_t get_uint16(std::string_view key) const { return get_as<std::uint16_t>(key); }
  std::int16_t get_int16(std::string_view key) const { return get_as<std::int16_t>(key); }
  std::uint32_t get_uint32(std::string_view key) const { return get_as<std::uint32_t>(key); }
  std::int32_t get_int32(std::string_view key) const { return get_as<std::int32_t>(key); }
  std::uint64_t get_uint64(std::string_view key) const { return get_as<std::uint64_t>(key); }
  std::int64_t get_int64(std::string_view key) const { return get_as<std::int64_t>(key); }
  float get_float(std::string_view key) const { return get_as<float>(key); }
  double get_double(std::string_view key) const { return get_as<double>(key); }
  bool get_bool(std::string_view key) const { return get_as<bool>(key); }
  const std::string& get_string(std::string_view key) const { return get_as<std::string>(key); }

  /// Any integer type (not bool) as int64; config_error for a uint64 above INT64_MAX.
  std::int64_t get_integer(std::string_view key) const {
    const gguf_value& value = get(key);
    return std::visit(
        [&](const auto& typed) -> std::int64_t {
          using T = std::decay_t<decltype(typed)>;
          if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            if constexpr (std::is_same_v<T, std::uint64_t>) {
              if (typed > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                PITH_THROW(config_error, path() + ": metadata key " + detail::quoted(key) + " = " +
                                             std::to_string(typed) + " does not fit in int64");
            }
            return static_cast<std::int64_t>(typed);
          } else {
            wrong_type(key, value, "an integer");
          }
        },
        value);
  }

  /// The array under `key`, whatever its element type.
  const gguf_array& get_array(std::string_view key) const { return get_as<gguf_array>(key); }
  /// The elements of the array under `key`, which must be of type T.
  template <class T>
  const std::vector<T>& get_array(std::string_view key) const {
    const gguf_value& value = get(key);
    if (const auto* array = std::get_if<gguf_array>(&value))
      if (const auto* elements = array->get_if<T>()) return *elements;
    wrong_type(key, value, "array of " + std::string(gguf_type_name(gguf_type_of<T>())));
  }

  // ---- tensors --------------------------------------------------------------------------------

  std::size_t tensor_count() const noexcept { return tensors_.size(); }
  /// Tensor infos in file order.
  const std::vector<gguf_tensor_info>& tensor_infos() const noexcept { return tensors_; }
  /// Tensor names in file order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& info : tensors_) out.push_back(info.name);
    return out;
  }
  bool contains(std::string_view name) const { return tensor_index_.find(name) != tensor_index_.end(); }

  /// The info of tensor `name`; format_error naming the file and the tensor when absent.
  const gguf_tensor_info& info(std::string_view name) const {
    const auto found = tensor_index_.find(name);
    if (found == tensor_index_.end())
      PITH_THROW(format_error, path() + ": no tensor " + detail::quoted(name) + " (the file holds " +
                                   std::to_string(tensors_.size()) + " tensors)");
    return tensors_[found->second];
  }

  /// A view of tensor `name` (row-major shape, see the class comment).
  file_tensor tensor(std::string_view name) const {
    const gguf_tensor_info& entry = info(name);
    const ggml_type_info* type = find_ggml_type(entry.type);  // known: checked when parsing
    file_tensor out;
    out.name = entry.name;
    out.dtype = type->dtype;
    out.dtype_name = type->name;
    out.storage = entry.storage;
    out.shape = entry.shape();
    // A zero-byte tensor may sit where the data section would start, past the end of a file that
    // omits the final padding: give it an empty view rather than an offset outside the mapping.
    if (entry.byte_size != 0)
      out.bytes = file_.bytes().subspan(static_cast<std::size_t>(data_offset_ + entry.offset),
                                        static_cast<std::size_t>(entry.byte_size));
    out.file = path();
    return out;
  }

 private:
  [[noreturn]] void wrong_type(std::string_view key, const gguf_value& value, const std::string& expected) const {
    PITH_THROW(config_error, path() + ": metadata key " + detail::quoted(key) + " has type " + describe_type(value) +
                                 ", expected " + expected);
  }
  [[noreturn]] void fail(const std::string& message) const { PITH_THROW(format_error, path() + ": " + message); }

  // Bounds-checked sequential reads over the mapping; `context_` names what is being read.
  std::uint64_t remaining() const noexcept { return file_.size() - position_; }
  void require(std::uint64_t bytes, std::string_view what) const {
    if (bytes > remaining())
      fail("truncated or corrupt: " + std::string(what) + " of " + context_ + " needs " + std::to_string(bytes) +
           " bytes at offset " + std::to_string(position_) + ", only " + std::to_string(remaining()) + " remain");
  }
  template <class T>
  T read(std::string_view what) {
    require(sizeof(T), what);
    const T value = detail::load_little_endian<T>(file_.data() + position_);
    position_ += sizeof(T);
    return value;
  }
  std::string read_string(std::string_view what) {
    const auto length = read<std::uint64_t>(what);
    require(length, what);
    std::string out(reinterpret_cast<const char*>(file_.data() + position_), static_cast<std::size_t>(length));
    position_ += length;
    return out;
  }
  bool read_bool() {
    const auto byte = read<std::uint8_t>("a bool");
    if (byte > 1) fail("bool value " + std::to_string(byte) + " in " + context_ + " is neither 0 nor 1");
    return byte != 0;
  }

  template <class T>
  std::vector<T> read_elements(std::uint64_t count) {
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(count));  // count ≤ remaining bytes / element size, checked by the caller
    for (std::uint64_t i = 0; i < count; ++i) {
      if constexpr (std::is_same_v<T, std::string>)
        out.push_back(read_string("an array string"));
      else if constexpr (std::is_same_v<T, bool>)
        out.push_back(read_bool());
      else
        out.push_back(read<T>("an array element"));
    }
    return out;
  }

  gguf_array read_array() {
    const auto element_type = read<std::uint32_t>("the array element type");
    const auto count = read<std::uint64_t>("the array length");
    if (element_type == static_cast<std::uint32_t>(gguf_type::array))
      fail(context_ + " is an array of arrays, which GGUF readers do not support");
    if (element_type > static_cast<std::uint32_t>(gguf_type::float64))
      fail(context_ + " is an array of unknown type " + std::to_string(element_type));
    // Smallest encoded size of one element: a string is at least its 8-byte length.
    static constexpr std::uint64_t min_bytes[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 0, 8, 8, 8};
    if (count > remaining() / min_bytes[element_type])
      fail("truncated or corrupt: " + context_ + " claims " + std::to_string(count) + " elements, but only " +
           std::to_string(remaining()) + " bytes remain");
    gguf_array array;
    switch (static_cast<gguf_type>(element_type)) {
      case gguf_type::uint8:
        array.values = read_elements<std::uint8_t>(count);
        break;
      case gguf_type::int8:
        array.values = read_elements<std::int8_t>(count);
        break;
      case gguf_type::uint16:
        array.values = read_elements<std::uint16_t>(count);
        break;
      case gguf_type::int16:
        array.values = read_elements<std::int16_t>(count);
        break;
      case gguf_type::uint32:
        array.values = read_elements<std::uint32_t>(count);
        break;
      case gguf_type::int32:
        array.values = read_elements<std::int32_t>(count);
        break;
      case gguf_type::float32:
        array.values = read_elements<float>(count);
        break;
      case gguf_type::boolean:
        array.values = read_elements<bool>(count);
        break;
      case gguf_type::string:
        array.values = read_elements<std::string>(count);
        break;
      case gguf_type::uint64:
        array.values = read_elements<std::uint64_t>(count);
        break;
      case gguf_type::int64:
        array.values = read_elements<std::int64_t>(count);
        break;
      case gguf_type::float64:
        array.values = read_elements<double>(count);
        break;
      case gguf_type::array:
        break;  // rejected above
    }
    return array;
  }

  gguf_value read_value(std::uint32_t type) {
    switch (type) {
      case 0:
        return read<std::uint8_t>("a uint8 value");
      case 1:
        return read<std::int8_t>("an int8 value");
      case 2:
        return read<std::uint16_t>("a uint16 value");
      case 3:
        return read<std::int16_t>("an int16 value");
      case 4:
        return read<std::uint32_t>("a uint32 value");
      case 5:
        return read<std::int32_t>("an int32 value");
      case 6:
        return read<float>("a float32 value");
      case 7:
        return read_bool();
      case 8:
        return read_string("a string value");
      case 9:
        return read_array();
      case 10:
        return read<std::uint64_t>("a uint64 value");
      case 11:
        return read<std::int64_t>("an int64 value");
      case 12:
        return read<double>("a float64 value");
      default:
        fail(context_ + " has unknown value type " + std::to_string(type));
    }
  }

  void parse() {
    context_ = "the header";
    require(4, "the magic");
    if (std::string_view(reinterpret_cast<const char*>(file_.data()), 4) != "GGUF")
      fail("not a GGUF file (the first 4 bytes are not \"GGUF\")");
    position_ = 4;
    const auto version = read<std::uint32_t>("the version");
    if (version != supported_version) {
      if ((version & 0xffffu) == 0 && version != 0) fail("big-endian GGUF files are not supported");
      fail("GGUF version " + std::to_string(version) + " is not supported (pith reads version 3)");
    }
    const auto tensor_count = read<std::uint64_t>("the tensor count");
    const auto kv_count = read<std::uint64_t>("the metadata count");
    // Smallest possible entries: a key/value is an 8-byte key length, a 4-byte type and a 1-byte
    // value; a tensor info is an 8-byte name length, a 4-byte n_dims, a 4-byte type and an 8-byte offset.
    if (kv_count > remaining() / 13)
      fail("truncated or corrupt: " + std::to_string(kv_count) + " metadata entries cannot fit in the file");
    if (tensor_count > remaining() / 24)
      fail("truncated or corrupt: " + std::to_string(tensor_count) + " tensor infos cannot fit in the file");

    metadata_.reserve(static_cast<std::size_t>(kv_count));
    for (std::uint64_t i = 0; i < kv_count; ++i) {
      context_ = "metadata entry " + std::to_string(i);
      std::string key = read_string("the key");
      context_ = "metadata key " + detail::quoted(key);
      if (key_index_.find(key) != key_index_.end()) fail("duplicate " + context_);
      const auto type = read<std::uint32_t>("the value type");
      gguf_value value = read_value(type);
      key_index_.emplace(key, metadata_.size());
      metadata_.emplace_back(std::move(key), std::move(value));
    }

    if (const auto found = key_index_.find("general.alignment"); found != key_index_.end()) {
      const auto* value = std::get_if<std::uint32_t>(&metadata_[found->second].second);
      if (value == nullptr)
        fail("metadata key 'general.alignment' has type " + describe_type(metadata_[found->second].second) +
             ", expected uint32");
      if (*value == 0 || (*value & (*value - 1)) != 0)
        fail("general.alignment = " + std::to_string(*value) + " is not a power of two");
      alignment_ = *value;
    }

    tensors_.reserve(static_cast<std::size_t>(tensor_count));
    for (std::uint64_t i = 0; i < tensor_count; ++i) {
      context_ = "tensor info " + std::to_string(i);
      gguf_tensor_info entry;
      entry.name = read_string("the name");
      context_ = "tensor " + detail::quoted(entry.name);
      if (tensor_index_.find(entry.name) != tensor_index_.end()) fail("duplicate " + context_);
      const auto n_dims = read<std::uint32_t>("n_dims");
      if (n_dims > max_dims) fail(context_ + " has " + std::to_string(n_dims) + " dimensions, at most 4 are allowed");
      std::uint64_t count = 1;
      // The product of the non-zero extents bounds every partial product in either order (file_tensor
      // multiplies the row-major shape, ne reversed), so a zero extent cannot hide an overflow.
      std::uint64_t nonzero_count = 1;
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        const auto extent = read<std::uint64_t>("a dimension");
        constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        const auto product = detail::checked_mul(nonzero_count, extent == 0 ? 1 : extent);
        if (extent > limit || !product || *product > limit)
          fail(context_ + " has extents whose product does not fit in 63 bits");
        nonzero_count = *product;
        count *= extent;
        entry.ne.push_back(static_cast<std::int64_t>(extent));
      }
      entry.type = read<std::uint32_t>("the type");
      const ggml_type_info* type = find_ggml_type(entry.type);
      if (type == nullptr) fail(context_ + " has unknown ggml type " + std::to_string(entry.type));
      const std::optional<dtype> storage = dtype_from_ggml_id(entry.type);
      if (!storage || dtype_is_activation_only(*storage))
        fail(context_ + " has type " + std::string(type->name) + " (ggml type " + std::to_string(entry.type) +
             "), which pith does not support (supported: " + supported_gguf_types() + ")");
      entry.storage = *storage;
      const std::uint64_t row = entry.ne.empty() ? 1 : static_cast<std::uint64_t>(entry.ne[0]);
      if (row % type->block_size != 0)
        fail(context_ + " has rows of " + std::to_string(row) + " elements, not a multiple of the " +
             std::string(type->name) + " block size " + std::to_string(type->block_size));
      const auto byte_size = detail::checked_mul(count / type->block_size, type->block_bytes);
      if (!byte_size) fail(context_ + " needs more than 2^64 bytes");
      entry.byte_size = *byte_size;
      entry.offset = read<std::uint64_t>("the offset");
      if (entry.offset % alignment_ != 0)
        fail(context_ + " has offset " + std::to_string(entry.offset) + ", not a multiple of the alignment " +
             std::to_string(alignment_));
      tensor_index_.emplace(entry.name, tensors_.size());
      tensors_.push_back(std::move(entry));
    }

    data_offset_ = (position_ + alignment_ - 1) / alignment_ * alignment_;
    const std::uint64_t data_size = data_offset_ < file_.size() ? file_.size() - data_offset_ : 0;
    std::vector<const gguf_tensor_info*> by_offset;
    by_offset.reserve(tensors_.size());
    for (const auto& entry : tensors_) {
      const auto end = detail::checked_add(entry.offset, entry.byte_size);
      if (!end || *end > data_size)
        fail("truncated or corrupt: tensor " + detail::quoted(entry.name) + " occupies bytes " +
             std::to_string(entry.offset) + " to " + (end ? std::to_string(*end) : std::string("beyond 2^64")) +
             " of a data section of " + std::to_string(data_size) + " bytes");
      by_offset.push_back(&entry);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](const gguf_tensor_info* a, const gguf_tensor_info* b) {
      return a->offset != b->offset ? a->offset < b->offset : a->byte_size < b->byte_size;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->byte_size)
        fail("tensors " + detail::quoted(by_offset[i - 1]->name) + " and " + detail::quoted(by_offset[i]->name) +
             " overlap");
  }

  mapped_file file_;
  std::uint64_t position_ = 0;
  std::string context_;
  std::uint32_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, gguf_value>> metadata_;
  std::map<std::string, std::size_t, std::less<>> key_index_;
  std::vector<gguf_tensor_info> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

}  // namespace pith
