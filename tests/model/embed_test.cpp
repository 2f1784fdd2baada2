// SPDX-License-Identifier: MIT
// The embedding example's engine (examples/embed/), built from pith's public blocks over arrays
// it owns, against pith::session and pith::reader on the shipped toy model: the same logits bit
// for bit (a prefill chunk, decode steps, a second chunk) and, reading a document with CItruS,
// the same kept document positions, answer and answer logits.
//
// Exactness holds at any thread count: both sides call the same kernels on the same shapes, and
// the pool splits a matrix product by output features, which leaves each output's sum unchanged.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <pith/model/sampler.hpp>
#include <pith/model/transformer.hpp>
#include <pith/model/weights.hpp>
#include <pith/runtime/reader.hpp>
#include <pith/runtime/toy_tasks.hpp>

#include "embed/citrus.hpp"
#include "embed/loader.hpp"

namespace {

const std::filesystem::path toy_block = std::filesystem::path(PITH_EXAMPLE_MODELS_DIR) / "toy-block";

// Index of the first element whose bits differ, or -1.
long first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return static_cast<long>(i);
  return -1;
}

TEST(EmbedExample, LogitsEqualTheSessionsBitForBit) {
  const pith::model_weights model = pith::load_model(toy_block);
  const embed::weights own = embed::load(toy_block);
  const std::size_t vocab = own.c.vocab;
  ASSERT_EQ(vocab, model.config.vocab_size);
  const auto doc = pith::make_toy_document(pith::toy_task::kv, 200, 11);

  pith::session s(model, {256, 64});
  embed::engine e(own, 256, 64);
  std::vector<float> expected(vocab), actual(vocab);
  // A prefill chunk.
  const std::span<const std::int32_t> prompt(doc.ids.data(), 48);
  s.forward(prompt, expected.data());
  e.forward(prompt, actual.data());
  ASSERT_EQ(first_difference(expected, actual), -1) << "prefill";
  // Greedy decode steps, one token per pass.
  for (int step = 0; step < 8; ++step) {
    const auto next = static_cast<std::int32_t>(std::max_element(expected.begin(), expected.end()) - expected.begin());
    s.forward(std::span(&next, 1), expected.data());
    e.forward(std::span(&next, 1), actual.data());
    ASSERT_EQ(first_difference(expected, actual), -1) << "decode step " << step;
  }
  // A second chunk on top of the cache.
  const std::span<const std::int32_t> more(doc.ids.data() + 48, 37);
  s.forward(more, expected.data());
  e.forward(more, actual.data());
  ASSERT_EQ(first_difference(expected, actual), -1) << "second chunk";
  EXPECT_EQ(e.position(), s.position());
}

TEST(EmbedExample, CitrusKeepsTheReadersDocumentPositions) {
  const pith::model_weights model = pith::load_model(toy_block);
  const embed::weights own = embed::load(toy_block);
  const auto doc = pith::make_toy_document(pith::toy_task::kv, 1500, 5);
  for (const std::size_t pool : {1u, 7u}) {
    SCOPED_TRACE("citrus_pool " + std::to_string(pool));
    pith::reader_options o;
    o.policy = pith::policy_kind::citrus_shared;
    o.budget = 48;
    o.chunk_size = 64;  // 1500 = 23 chunks of 64 and one of 28
    o.citrus_pool = pool;
    o.max_answer_tokens = doc.answer.size();
    pith::reader r(model, o, doc.instruction);
    r.feed(doc.ids);
    pith::sampler greedy;
    const auto expected_answer = r.answer(doc.answer.size(), greedy);

    const embed::citrus_options options{o.budget, o.chunk_size, pool};
    embed::engine e(own, embed::citrus_capacity(options, doc.instruction.size(), doc.answer.size()),
                    options.chunk + doc.instruction.size());
    embed::citrus_reader reader(e, own.c, options, doc.instruction);
    reader.read(doc.ids);
    std::vector<float> first_logits;
    const auto answer = reader.answer(doc.answer.size(), own.c.vocab, &first_logits);

    for (std::size_t l = 0; l < own.c.layers; ++l) {
      ASSERT_EQ(reader.document_positions(l).size(), o.budget) << "layer " << l;
      for (std::size_t g = 0; g < own.c.kv_heads; ++g)
        EXPECT_EQ(reader.document_positions(l), r.document_positions(l, g)) << "layer " << l << " kv head " << g;
    }
    EXPECT_EQ(answer, expected_answer);
    EXPECT_EQ(first_difference(r.answer_logits(), first_logits), -1);
  }
}

TEST(EmbedExample, TheLoaderNamesWhatIsWrong) {
  try {
    embed::load(std::filesystem::path(PITH_EXAMPLE_MODELS_DIR) / "toy-standard");
    FAIL() << "toy-standard has no attention residuals";
  } catch (const pith::config_error& error) {
    EXPECT_NE(std::string(error.what()).find("block attention residuals"), std::string::npos) << error.what();
  }
  EXPECT_THROW(embed::load(std::filesystem::path(PITH_EXAMPLE_MODELS_DIR) / "absent"), pith::io_error);
}

}  // namespace
