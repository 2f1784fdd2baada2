// SPDX-License-Identifier: MIT
// Chat templates with the real Llama 3, Qwen3 and Gemma 3 tokenizers: the rendered prompts' ids equal
// those the reference tokenizers give (notes/tokenizers.md §5.1: @huggingface/jinja's rendering
// tokenized by @huggingface/tokenizers), the stop tokens are the families' end-of-turn ids, and the
// way pith-read cuts a prompt around a document tokenizes as the whole prompt does.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <pith/io/chat_template.hpp>
#include <pith/io/tokenizer_bpe.hpp>

#include "test_util.hpp"

namespace {

using pith::chat_message;
using ids = std::vector<std::int32_t>;

struct chat_case {
  const char* folder;
  ids user;         // [user "Hello"] with the generation prompt
  ids system_user;  // [system "Be brief.", user "Hello"]
  ids stops;
};

// notes/tokenizers.md §5.1 and §3.3.
const chat_case chat_cases[] = {
    {"llama3",
     {128000, 128006, 882, 128007, 271, 9906, 128009, 128006, 78191, 128007, 271},
     {128000, 128006, 9125, 128007, 271, 3513, 10015, 13, 128009, 128006, 882, 128007, 271, 9906, 128009, 128006,
      78191, 128007, 271},
     {128009, 128001}},
    {"qwen3",
     {151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198},
     {151644, 8948, 198, 3430, 9814, 13, 151645, 198, 151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198},
     {151645, 151643}},
    {"gemma3",
     {2, 105, 2364, 107, 9259, 106, 107, 105, 4368, 107},
     {2, 105, 2364, 107, 3912, 8652, 236761, 108, 9259, 106, 107, 105, 4368, 107},
     {106, 1}},
};

// What pith-generate --chat feeds the model: the tokenizer's special prefix unless the template
// writes BOS itself, then the rendered text's tokens.
ids prompt_ids(const pith::tokenizer& tok, const pith::chat_template& t, const std::vector<chat_message>& messages) {
  ids out = t.renders_bos() ? ids{} : tok.special_prefix();
  const ids body = pith::encode_chat(tok, t, t.render(messages));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

TEST(ChatBpe, RenderedPromptsTokenizeAsTheReference) {
  for (const chat_case& c : chat_cases) {
    const std::string folder = std::string("tokenizers/") + c.folder;
    const std::filesystem::path config = pith_test::shared_model(folder + "/tokenizer_config.json");
    if (config.empty()) GTEST_SKIP() << folder << " not found under " << PITH_SHARED_MODELS_DIR;
    const pith::tokenizer tok = pith::load_tokenizer(config.parent_path());
    const auto t = pith::chat_template::from_tokenizer_config(config);
    ASSERT_TRUE(t) << c.folder;
    EXPECT_EQ(prompt_ids(tok, *t, {{"user", "Hello"}}), c.user) << c.folder;
    EXPECT_EQ(prompt_ids(tok, *t, {{"system", "Be brief."}, {"user", "Hello"}}), c.system_user) << c.folder;
    EXPECT_EQ(pith::chat_stop_tokens(tok, *t), c.stops) << c.folder;
  }
}

// pith-read: the frame's opening up to its last special token, then the rest of the opening with
// the document and the blank line, then the instruction with the frame's end; together the ids of
// the whole rendered prompt.
TEST(ChatBpe, ReaderCutTokenizesAsTheWholePrompt) {
  const std::string document = "Alice keeps the key in the red box.\nBob keeps the code 4711.";
  const std::string question = "What is the code of bob?";
  for (const chat_case& c : chat_cases) {
    const std::string folder = std::string("tokenizers/") + c.folder;
    const std::filesystem::path config = pith_test::shared_model(folder + "/tokenizer_config.json");
    if (config.empty()) GTEST_SKIP() << folder << " not found under " << PITH_SHARED_MODELS_DIR;
    const pith::tokenizer tok = pith::load_tokenizer(config.parent_path());
    const auto t = pith::chat_template::from_tokenizer_config(config);
    ASSERT_TRUE(t);
    for (const std::optional<std::string>& system : {std::optional<std::string>(), std::optional<std::string>("Be brief.")}) {
      const auto frame = t->user_turn(system);
      std::size_t cut = 0;
      for (const std::string& special : t->special_strings())
        for (std::size_t at = frame.before.find(special); at != std::string::npos; at = frame.before.find(special, at + 1))
          cut = std::max(cut, at + special.size());
      ids pieces = t->renders_bos() ? ids{} : tok.special_prefix();
      for (const std::string& part : {frame.before.substr(0, cut), frame.before.substr(cut) + document + "\n\n",
                                      question + frame.after}) {
        const ids part_ids = pith::encode_chat(tok, *t, part);
        pieces.insert(pieces.end(), part_ids.begin(), part_ids.end());
      }
      std::vector<chat_message> messages;
      if (system) messages.push_back({"system", *system});
      messages.push_back({"user", document + "\n\n" + question});
      EXPECT_EQ(pieces, prompt_ids(tok, *t, messages)) << c.folder << (system ? " with a system message" : "");
    }
  }
}

}  // namespace
