// SPDX-License-Identifier: MIT
// pith-embed: pith's layers used as building blocks by an engine that owns its weights, KV cache
// and loop (examples/embed/, docs/embedding.md). Loads a toy model, continues a prompt, then reads
// a generated document with CItruS over its own cache and answers the document's question.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include <pith/runtime/toy_tasks.hpp>  // the synthetic document and the toy vocabulary, for the demo only

#include "embed/citrus.hpp"
#include "embed/loader.hpp"

namespace {

// Token ids of space-separated words of the toy vocabulary.
std::vector<std::int32_t> ids_of(const std::string& text) {
  static const std::vector<std::string> vocabulary = pith::toy_vocabulary();
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = std::min(text.find(' ', start), text.size());
    const auto found = std::find(vocabulary.begin(), vocabulary.end(), text.substr(start, end - start));
    if (found == vocabulary.end()) throw pith::argument_error("'" + text.substr(start, end - start) + "' is not a toy word");
    ids.push_back(static_cast<std::int32_t>(found - vocabulary.begin()));
    start = end + 1;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: pith-embed MODEL_FOLDER (examples/models/toy-block)\n");
    return 2;
  }
  const embed::weights w = embed::load(argv[1]);
  const embed::config& c = w.c;
  std::printf("model: %zu layers, hidden %zu, %zu heads (%zu KV), block attention residuals of %zu layers\n",
              c.layers, c.hidden, c.heads, c.kv_heads, c.block_size);

  // 1. A prompt, prefilled as one chunk, then greedy decoding one token per pass.
  {
    const std::vector<std::int32_t> prompt = ids_of("<s> the code of zoe is 9 0 2 4 . what is the code of zoe ?");
    embed::engine e(w, 64, 32);
    std::vector<float> logits(c.vocab);
    e.forward(prompt, logits.data());
    std::vector<std::int32_t> out;
    for (int step = 0; step < 6; ++step) {
      out.push_back(static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      e.forward(std::span(&out.back(), 1), logits.data());
    }
    std::printf("prompt: %s -> %s\n", pith::toy_text(prompt).c_str(), pith::toy_text(out).c_str());
  }

  // 2. A 2,000-token document read in chunks of 64 with a cache of 64 kept states (CItruS, shared cache).
  const auto doc = pith::make_toy_document(pith::toy_task::kv, 2000, 7);
  const embed::citrus_options options{64, 64, 7};
  embed::engine e(w, embed::citrus_capacity(options, doc.instruction.size(), doc.answer.size()),
                  options.chunk + doc.instruction.size());
  embed::citrus_reader reader(e, c, options, doc.instruction);
  reader.read(doc.ids);
  const auto answer = reader.answer(doc.answer.size(), c.vocab);
  std::printf("document: %zu tokens read in chunks of %zu, %zu states kept per layer\n", doc.ids.size(), options.chunk,
              reader.document_positions(0).size());
  std::printf("question: %s\nanswer: %s (%s)\nexpected: %s\n", pith::toy_text(doc.instruction).c_str(),
              pith::toy_text(answer).c_str(), answer == doc.answer ? "correct" : "wrong",
              pith::toy_text(doc.answer).c_str());
  return 0;
} catch (const std::exception& error) {
  std::fprintf(stderr, "pith-embed: %s\n", error.what());
  return 1;
}
