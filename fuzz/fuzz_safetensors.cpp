// SPDX-License-Identifier: MIT
// libFuzzer target: pith::safetensors_file on arbitrary bytes; every tensor it accepts is viewed and converted.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <pith/core/error.hpp>
#include <pith/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const pith_fuzz::input_file input("safetensors", ".safetensors");
  const auto& path = input.write({data, size});
  std::optional<pith::safetensors_file> loaded;
  try {
    loaded.emplace(path);
  } catch (const pith::error&) {
    return 0;  // rejected input: the expected outcome for most mutations
  }
  // Outside the try: viewing and converting the tensors of an accepted file must not throw.
  const pith::safetensors_file& file = *loaded;
  const auto names = file.names();
  if (names.size() != file.size()) pith_fuzz::fail("names() and size() disagree");
  for (const std::string& name : names) {
    if (!file.contains(name)) pith_fuzz::fail("listed tensor '" + name + "' is not contained");
    pith_fuzz::exercise_tensor(file.tensor(name));
  }
  for (const auto& [key, value] : file.metadata()) pith_fuzz::keep(key.size() + value.size());
  return 0;
}
