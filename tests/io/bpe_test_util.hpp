// SPDX-License-Identifier: MIT
// The real tokenizer.json files of ../shared/models/tokenizers, each read once for every BPE test of the binary.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include <pith/io/tokenizer_bpe.hpp>

#include "test_util.hpp"

namespace pith_test {

/// The tokenizer of ../shared/models/tokenizers/`name` (llama3, qwen3, gemma3), or nullptr when absent.
inline const pith::tokenizer* real_bpe_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<pith::tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) {
    const auto path = shared_model("tokenizers/" + name + "/tokenizer.json");
    if (path.empty()) return nullptr;
    slot = std::make_unique<pith::tokenizer>(pith::load_tokenizer(path));
  }
  return slot.get();
}

}  // namespace pith_test

/// Declares `variable` as the real tokenizer `name`, or skips the test when its file is absent.
#define PITH_REAL_BPE_OR_SKIP(variable, name)                               \
  const pith::tokenizer* variable = ::pith_test::real_bpe_tokenizer(name); \
  if (variable == nullptr) GTEST_SKIP() << "tokenizers/" << (name) << "/tokenizer.json not found under " << PITH_SHARED_MODELS_DIR
