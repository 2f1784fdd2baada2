// SPDX-License-Identifier: MIT
// safetensors reader (memory-mapped, every header field validated against the file) and a small writer.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "pith/core/error.hpp"
#include "pith/io/detail.hpp"
#include "pith/io/file_tensor.hpp"
#include "pith/io/mmap.hpp"

namespace pith {

namespace detail {

struct safetensors_dtype_info {
  std::string_view name;
  element_type type;
  std::uint64_t size;  // bytes per element
};

/// Every whole-byte dtype of the safetensors specification; sub-byte types (F4, F6_*) are rejected.
inline const safetensors_dtype_info* find_safetensors_dtype(std::string_view name) noexcept {
  static constexpr safetensors_dtype_info table[] = {
      {"F32", element_type::f32, 4},       {"F16", element_type::f16, 2},       {"BF16", element_type::bf16, 2},
      {"F64", element_type::other, 8},     {"I64", element_type::other, 8},     {"U64", element_type::other, 8},
      {"I32", element_type::other, 4},     {"U32", element_type::other, 4},     {"I16", element_type::other, 2},
      {"U16", element_type::other, 2},     {"I8", element_type::other, 1},      {"U8", element_type::other, 1},
      {"BOOL", element_type::other, 1},    {"F8_E5M2", element_type::other, 1}, {"F8_E4M3", element_type::other, 1},
      {"F8_E8M0", element_type::other, 1},
  };
  for (const auto& info : table)
    if (info.name == name) return &info;
  return nullptr;
}

}  // namespace detail

/// A memory-mapped safetensors file: an 8-byte little-endian header length N, N bytes of JSON
/// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
/// data area, to which the offsets are relative. The constructor checks every field against the
/// file (header length, JSON, dtype, shape, offsets inside the data area, end - begin equal to
/// product(shape) × dtype size without overflow, no two tensors overlapping) and throws
/// format_error naming the file (and the tensor) on the first violation, io_error when the file
/// cannot be read. Tensors of any whole-byte dtype can be viewed; to_float takes F32, F16 and BF16.
class safetensors_file {
 public:
  explicit safetensors_file(const std::filesystem::path& path) : file_(path) { parse(); }

  const std::string& path() const noexcept { return file_.path(); }
  /// Number of tensors.
  std::size_t size() const noexcept { return entries_.size(); }
  /// Tensor names in lexicographic order.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const auto& [name, entry] : entries_) out.push_back(name);
    return out;
  }
  bool contains(std::string_view name) const { return entries_.find(name) != entries_.end(); }

  /// The tensor called `name`; throws format_error naming the file and the tensor when absent.
  file_tensor tensor(std::string_view name) const {
    const auto found = entries_.find(name);
    if (found == entries_.end())
      PITH_THROW(format_error, path() + ": no tensor " + detail::quoted(name) + " (the file holds " +
                                   std::to_string(entries_.size()) + " tensors)");
    const entry& e = found->second;
    file_tensor out;
    out.name = found->first;
    out.dtype = e.type;
    out.dtype_name = e.dtype_name;
    out.shape = e.shape;
    out.bytes = file_.bytes().subspan(data_start_ + e.begin, e.end - e.begin);
    out.file = path();
    return out;
  }

  /// The string values of "__metadata__" (other value types are skipped; the key is optional).
  const std::map<std::string, std::string, std::less<>>& metadata() const noexcept { return metadata_; }

 private:
  struct entry {
    element_type type = element_type::other;
    std::string dtype_name;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;  // relative to the data area
    std::uint64_t end = 0;
  };

  [[noreturn]] void fail(const std::string& message) const { PITH_THROW(format_error, path() + ": " + message); }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& message) const {
    fail("tensor " + detail::quoted(name) + ": " + message);
  }

  void parse() {
    const std::uint64_t file_size = file_.size();
    if (file_size < 8)
      fail("file of " + std::to_string(file_size) + " bytes is too short for the 8-byte header length");
    const auto header_size = detail::load_little_endian<std::uint64_t>(file_.data());
    if (header_size > file_size - 8)
      fail("header length " + std::to_string(header_size) + " exceeds the " + std::to_string(file_size - 8) +
           " bytes after the length field");
    data_start_ = static_cast<std::size_t>(8 + header_size);
    const std::uint64_t data_size = file_size - 8 - header_size;

    const nlohmann::json header = detail::parse_json(
        std::string_view(reinterpret_cast<const char*>(file_.data() + 8), static_cast<std::size_t>(header_size)),
        path() + ": header");
    if (!header.is_object()) fail("header is not a JSON object");

    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        if (value.is_object())
          for (const auto& [key, text] : value.items())
            if (text.is_string()) metadata_.emplace(key, text.get<std::string>());
        continue;
      }
      entries_.emplace(name, parse_entry(name, value, data_size));
    }

    std::vector<const entry*> by_offset;
    by_offset.reserve(entries_.size());
    for (const auto& [name, e] : entries_) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const entry* a, const entry* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      if (by_offset[i]->begin < by_offset[i - 1]->end)
        fail("two tensors overlap in the data area (bytes " + std::to_string(by_offset[i]->begin) + " to " +
             std::to_string(by_offset[i - 1]->end) + ")");
    }
  }

  entry parse_entry(const std::string& name, const nlohmann::json& value, std::uint64_t data_size) const {
    if (!value.is_object()) fail_tensor(name, "entry is not a JSON object");
    entry e;

    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) fail_tensor(name, "missing string field 'dtype'");
    e.dtype_name = dtype->get<std::string>();
    const auto* info = detail::find_safetensors_dtype(e.dtype_name);
    if (info == nullptr) fail_tensor(name, "unknown dtype " + detail::quoted(e.dtype_name));
    e.type = info->type;

    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) fail_tensor(name, "missing array field 'shape'");
    std::uint64_t count = 1;
    for (const auto& extent : *shape) {
      if (!extent.is_number_unsigned() ||
          extent.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail_tensor(name, "shape " + detail::json_excerpt(*shape) + " holds a value that is not a non-negative 64-bit integer");
      const auto product = detail::checked_mul(count, extent.get<std::uint64_t>());
      if (!product || *product > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail_tensor(name, "shape " + detail::json_excerpt(*shape) + " has more elements than fit in 63 bits");
      count = *product;
      e.shape.push_back(static_cast<std::int64_t>(extent.get<std::uint64_t>()));
    }
    const auto byte_count = detail::checked_mul(count, info->size);
    if (!byte_count) fail_tensor(name, "shape " + detail::json_excerpt(*shape) + " is too large for dtype " + e.dtype_name);

    const auto offsets = value.find("data_offsets");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
        !(*offsets)[1].is_number_unsigned())
      fail_tensor(name, "'data_offsets' must be two non-negative integers");
    e.begin = (*offsets)[0].get<std::uint64_t>();
    e.end = (*offsets)[1].get<std::uint64_t>();
    if (e.begin > e.end || e.end > data_size)
      fail_tensor(name, "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                            "] are outside the data area of " + std::to_string(data_size) + " bytes");
    if (e.end - e.begin != *byte_count)
      fail_tensor(name, "data_offsets span " + std::to_string(e.end - e.begin) + " bytes, but shape " + detail::json_excerpt(*shape) +
                            " of " + e.dtype_name + " needs " + std::to_string(*byte_count));
    return e;
  }

  mapped_file file_;
  std::map<std::string, entry, std::less<>> entries_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::size_t data_start_ = 0;
};

/// One tensor for write_safetensors. `data` holds product(shape) elements of `dtype` in the host's
/// byte order (the writer stores them little-endian).
struct safetensors_entry {
  std::string name;
  std::string dtype = "F32";
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
};

/// An F32 entry viewing `values` (which must outlive the write).
inline safetensors_entry f32_entry(std::string name, std::vector<std::int64_t> shape, std::span<const float> values) {
  return {std::move(name), "F32", std::move(shape), std::as_bytes(values)};
}

/// Writes a safetensors file with the tensors in the given order and `metadata` as "__metadata__".
/// Throws argument_error for an inconsistent entry (empty, reserved or duplicate name, unknown
/// dtype, negative extent, data size not matching the shape) and io_error when writing fails.
inline void write_safetensors(const std::filesystem::path& path, std::span<const safetensors_entry> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const std::string file = path.string();
  for (const auto& [key, value] : metadata)
    if (!detail::is_valid_utf8(key) || !detail::is_valid_utf8(value))
      PITH_THROW(argument_error, file + ": metadata " + detail::quoted(key) + " is not valid UTF-8");
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& tensor : tensors) {
    const auto fail = [&](const std::string& message) {
      PITH_THROW(argument_error, file + ": tensor " + detail::quoted(tensor.name) + ": " + message);
    };
    if (tensor.name.empty() || tensor.name == "__metadata__") fail("reserved or empty name");
    if (!detail::is_valid_utf8(tensor.name)) fail("name is not valid UTF-8");
    if (header.contains(tensor.name)) fail("duplicate name");
    const auto* info = detail::find_safetensors_dtype(tensor.dtype);
    if (info == nullptr) fail("unknown dtype " + detail::quoted(tensor.dtype));
    std::uint64_t count = 1;
    for (const std::int64_t extent : tensor.shape) {
      if (extent < 0) fail("negative extent");
      const auto product = detail::checked_mul(count, static_cast<std::uint64_t>(extent));
      if (!product) fail("shape overflows");
      count = *product;
    }
    const auto bytes = detail::checked_mul(count, info->size);
    if (!bytes || *bytes != tensor.data.size())
      fail("data holds " + std::to_string(tensor.data.size()) + " bytes, the shape needs " +
           (bytes ? std::to_string(*bytes) : std::string("more than 2^64")));
    header[tensor.name] = {
        {"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + *bytes}}};
    offset += *bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data area starts 8-byte aligned

  std::string prefix;
  detail::append_little_endian<std::uint64_t>(prefix, text.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) PITH_THROW(io_error, file + ": cannot open for writing");
  out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& tensor : tensors) {
    if constexpr (std::endian::native == std::endian::little) {
      out.write(reinterpret_cast<const char*>(tensor.data.data()), static_cast<std::streamsize>(tensor.data.size()));
    } else {
      const std::size_t width = detail::find_safetensors_dtype(tensor.dtype)->size;
      std::string swapped(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size());
      for (std::size_t i = 0; i < swapped.size(); i += width)
        std::reverse(swapped.begin() + i, swapped.begin() + i + width);
      out.write(swapped.data(), static_cast<std::streamsize>(swapped.size()));
    }
  }
  out.flush();
  if (!out) PITH_THROW(io_error, file + ": write failed");
}

}  // namespace pith
