// SPDX-License-Identifier: MIT
// libFuzzer target: pith::gguf_file on arbitrary bytes; metadata, tensor views and conversions exercised,
// block-quantized tensors dequantized and quantized again (fuzz_model loads models from GGUF bytes and
// runs them, quantized ones included).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <pith/core/error.hpp>
#include <pith/core/quantize.hpp>
#include <pith/io/gguf.hpp>

#include "fuzz_common.hpp"

namespace {

/// A small block-quantized tensor is dequantized (whatever its scales: NaN, inf, subnormal) and
/// quantized again with its type's reference quantizer, which must take any float without faulting.
void requantize(const pith::file_tensor& tensor) {
  if (!tensor.storage || !pith::quant::dtype_has_quantizer(*tensor.storage)) return;
  const std::int64_t count = tensor.element_count();
  if (count <= 0 || count > (std::int64_t{1} << 16)) return;
  const auto values = pith::to_float(tensor);
  std::vector<std::byte> blocks(pith::dtype_row_bytes(*tensor.storage, values.size()));
  pith::quant::quantize_row(*tensor.storage, values.data(), values.size(), blocks.data());
  std::vector<float> back(values.size());
  pith::quant::dequantize_row(*tensor.storage, blocks.data(), back.size(), back.data());
  pith_fuzz::keep(back.front());
  pith_fuzz::keep(back.back());
}

void exercise(const pith::gguf_file& file) {
  for (const auto& [key, value] : file.metadata()) {
    if (!file.has(key)) pith_fuzz::fail("metadata key '" + key + "' is listed but not found");
    pith_fuzz::keep(pith::describe_type(value).size());
    if (const auto* array = std::get_if<pith::gguf_array>(&value)) pith_fuzz::keep(array->size());
    try {
      pith_fuzz::keep(file.get_integer(key));  // config_error unless an integer that fits in int64
    } catch (const pith::config_error&) {
    }
  }
  const auto names = file.names();
  if (names.size() != file.tensor_count()) pith_fuzz::fail("names() and tensor_count() disagree");
  for (const std::string& name : names) {
    const pith::gguf_tensor_info& info = file.info(name);
    pith_fuzz::keep(info.shape().size());
    const pith::file_tensor tensor = file.tensor(name);
    if (tensor.bytes.size() != info.byte_size) pith_fuzz::fail("tensor '" + name + "' view disagrees with its info");
    pith_fuzz::exercise_tensor(tensor);
    requantize(tensor);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const pith_fuzz::input_file input("gguf", ".gguf");
  const auto& path = input.write({data, size});
  std::optional<pith::gguf_file> file;
  try {
    file.emplace(path);
  } catch (const pith::error&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  exercise(*file);  // outside the try: listing and converting an accepted file must not throw
  return 0;
}
