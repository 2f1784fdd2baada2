// SPDX-License-Identifier: MIT
// chat_template: recognition of each family, rendering byte for byte against @huggingface/jinja's
// rendering of the real templates (tests/data/chat/vectors.json, tools/make_chat_vectors.mjs),
// stop strings, and the tokens of rendered text.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <pith/io/chat_template.hpp>

#include "test_util.hpp"

namespace {

using pith::chat_family;
using pith::chat_message;
using pith::chat_template;

const std::filesystem::path chat_data = std::filesystem::path(PITH_TEST_DATA_DIR) / "chat";

nlohmann::json load_vectors() {
  return pith::detail::parse_json(pith_test::read_file(chat_data / "vectors.json"), "vectors.json");
}

// The template a vector set names: the real ones from the shared tokenizer folders (nullopt when
// absent), Mistral v0.3 and Llama 3.2 from tests/data/chat.
std::optional<chat_template> load_template(const nlohmann::json& entry) {
  const std::string name = entry["name"].get<std::string>();
  const std::string source = entry["source"].get<std::string>();
  if (name == "mistral-v0.3" || name == "llama3.2") {
    const std::string text = pith_test::read_file(chat_data / (name + ".jinja"));
    return chat_template::recognise(text, source, entry["bos_token"].get<std::string>(),
                                    entry["eos_token"].get<std::string>());
  }
  const std::filesystem::path path = pith_test::shared_model("tokenizers/" + source);
  if (path.empty()) return std::nullopt;
  return chat_template::from_tokenizer_config(path);
}

std::vector<chat_message> messages_of(const nlohmann::json& vector) {
  std::vector<chat_message> out;
  for (const auto& m : vector["messages"]) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

TEST(ChatTemplate, RendersEveryVectorByteForByte) {
  const nlohmann::json data = load_vectors();
  std::map<std::string, std::optional<chat_template>> templates;
  for (const auto& entry : data["templates"]) templates.emplace(entry["name"].get<std::string>(), load_template(entry));
  const std::map<std::string, chat_family> family = {{"llama3", chat_family::llama3},
                                                     {"qwen3", chat_family::chatml},
                                                     {"gemma3", chat_family::gemma},
                                                     {"mistral-v0.3", chat_family::mistral},
                                                     {"llama3.2", chat_family::llama3}};
  std::map<std::string, int> checked;
  for (const auto& [name, tmpl] : templates) {
    if (!tmpl) continue;
    EXPECT_EQ(tmpl->family(), family.at(name)) << name;
  }
  for (const auto& vector : data["vectors"]) {
    const std::string name = vector["template"].get<std::string>();
    const auto& tmpl = templates.at(name);
    if (!tmpl) continue;
    pith::chat_render_options options;
    options.add_generation_prompt = vector["add_generation_prompt"].get<bool>();
    if (vector.contains("enable_thinking")) options.enable_thinking = vector["enable_thinking"].get<bool>();
    const auto messages = messages_of(vector);
    const std::string label = name + " / " + vector["case"].get<std::string>();
    if (vector.contains("error")) {
      PITH_EXPECT_THROW_WITH(tmpl->render(messages, options), pith::argument_error,
                             vector["error"].get<std::string>());
    } else {
      EXPECT_EQ(tmpl->render(messages, options), vector["expected"].get<std::string>()) << label;
    }
    ++checked[name];
  }
  // Every vector set that is present was checked in full (the committed templates' always are).
  EXPECT_EQ(checked["mistral-v0.3"], 16);
  EXPECT_EQ(checked["llama3.2"], 16);
  for (const auto& [name, tmpl] : templates) {
    if (!tmpl) {
      std::printf("[ note ] %s: shared tokenizer_config.json absent, its vectors not checked\n", name.c_str());
      continue;
    }
    EXPECT_GE(checked[name], 16) << name;
  }
}

TEST(ChatTemplate, RealTemplatesReportBosAndTrimming) {
  PITH_SHARED_MODEL_OR_SKIP(llama3, "tokenizers/llama3/tokenizer_config.json");
  PITH_SHARED_MODEL_OR_SKIP(qwen3, "tokenizers/qwen3/tokenizer_config.json");
  PITH_SHARED_MODEL_OR_SKIP(gemma3, "tokenizers/gemma3/tokenizer_config.json");
  const auto l = chat_template::from_tokenizer_config(llama3);
  const auto q = chat_template::from_tokenizer_config(qwen3);
  const auto g = chat_template::from_tokenizer_config(gemma3);
  ASSERT_TRUE(l && q && g);
  EXPECT_TRUE(l->renders_bos());
  EXPECT_EQ(l->bos_token(), "<|begin_of_text|>");
  EXPECT_FALSE(q->renders_bos());  // Qwen has no BOS (bos_token null)
  EXPECT_TRUE(g->renders_bos());
  EXPECT_EQ(g->bos_token(), "<bos>");
  EXPECT_TRUE(l->trims_content());
  EXPECT_FALSE(q->trims_content());
  EXPECT_TRUE(g->trims_content());
  EXPECT_TRUE(q->default_system().empty());  // Qwen3 adds no system message
  EXPECT_NE(l->source().find("tokenizer_config.json"), std::string::npos);
}

TEST(ChatTemplate, StopStringsFollowTheFamily) {
  const auto make = [](std::string_view text, std::string eos) {
    return chat_template::recognise(text, "test", "", std::move(eos));
  };
  using strings = std::vector<std::string>;
  EXPECT_EQ(make("<|start_header_id|><|end_header_id|><|eot_id|>", "<|end_of_text|>").stop_strings(),
            (strings{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}));
  EXPECT_EQ(make("<|im_start|><|im_end|>", "<|im_end|>").stop_strings(), (strings{"<|im_end|>", "<|endoftext|>"}));
  EXPECT_EQ(make("<start_of_turn><end_of_turn>", "<end_of_turn>").stop_strings(), (strings{"<end_of_turn>", "<eos>"}));
  EXPECT_EQ(make("[INST] [/INST]", "</s>").stop_strings(), (strings{"</s>"}));
  // A model's own EOS text joins the family's.
  EXPECT_EQ(make("<|im_start|><|im_end|>", "<|end|>").stop_strings(),
            (strings{"<|im_end|>", "<|endoftext|>", "<|end|>"}));
}

TEST(ChatTemplate, RecognisesEachFamilyByItsMarkers) {
  const auto family = [](std::string_view text) { return chat_template::recognise(text, "t", "<s>", "</s>").family(); };
  EXPECT_EQ(family("{{ '<|start_header_id|>' + role + '<|end_header_id|>\\n\\n' + c + '<|eot_id|>' }}"),
            chat_family::llama3);
  EXPECT_EQ(family("{% for m in messages %}{{'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n'}}{% endfor %}"),
            chat_family::chatml);
  EXPECT_EQ(family("{{ '<start_of_turn>' + role + '\\n' + c + '<end_of_turn>\\n' }}"), chat_family::gemma);
  EXPECT_EQ(family("{{ bos_token }}{{ '[INST] ' + c + '[/INST]' }}"), chat_family::mistral);
}

TEST(ChatTemplate, UnknownTemplatesAreErrorsNamingTheSource) {
  PITH_EXPECT_THROW_WITH(chat_template::recognise("{{ messages[0].content }}", "model/tokenizer_config.json", "", ""),
                         pith::format_error, "model/tokenizer_config.json: the chat template is not one pith recognises");
  // Llama 2 writes [INST] too, with a <<SYS>> block no Mistral template has.
  PITH_EXPECT_THROW_WITH(
      chat_template::recognise("[INST] <<SYS>>\\n{{ system }}\\n<</SYS>>\\n\\n{{ user }} [/INST]", "llama2", "<s>", "</s>"),
      pith::format_error, "llama2: the chat template is not one pith recognises");
  PITH_EXPECT_THROW_WITH(chat_template::recognise("<|im_start|><|im_end|><start_of_turn><end_of_turn>", "mixed", "", ""),
                         pith::format_error, "markers of both ChatML and Gemma");
  PITH_EXPECT_THROW_WITH(chat_template::recognise("", "empty", "", ""), pith::format_error, "empty: the chat template");
}

TEST(ChatTemplate, UnsupportedRolesAreRefused) {
  const auto t = chat_template::recognise("<|im_start|><|im_end|>", "t", "", "<|im_end|>");
  const std::vector<chat_message> messages = {{"tool", "42"}};
  PITH_EXPECT_THROW_WITH((void)t.render(messages), pith::argument_error, "the role \"tool\" is not supported");
}

TEST(ChatTemplate, ConfigFilesAndBadJson) {
  pith_test::temp_file config(".json");
  config.write(R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                   "chat_template": [{"name": "tool_use", "template": "x"},
                                     {"name": "default", "template": "{{ bos_token }}{{ '[INST] ' + m + '[/INST]' }}"}]})");
  const auto t = chat_template::from_tokenizer_config(config.path());
  ASSERT_TRUE(t);
  EXPECT_EQ(t->family(), chat_family::mistral);
  EXPECT_EQ(t->bos_token(), "<s>");
  EXPECT_TRUE(t->renders_bos());
  const std::vector<chat_message> hello = {{"user", "Hello"}};
  EXPECT_EQ(t->render(hello), "<s>[INST] Hello[/INST]");

  config.write(R"({"bos_token": "<s>"})");
  EXPECT_FALSE(chat_template::from_tokenizer_config(config.path()));
  config.write(R"({"chat_template": "{{ nothing }}"})");
  PITH_EXPECT_THROW_WITH(chat_template::from_tokenizer_config(config.path()), pith::format_error,
                         config.name() + " chat_template: the chat template is not one pith recognises");
  config.write(R"({"chat_template": 3})");
  PITH_EXPECT_THROW_WITH(chat_template::from_tokenizer_config(config.path()), pith::format_error, config.name());
  config.write(R"({"chat_template": )");
  PITH_EXPECT_THROW_WITH(chat_template::from_tokenizer_config(config.path()), pith::format_error, "not valid JSON");
}

TEST(ChatTemplate, MistralSpacingVariants) {
  const std::vector<chat_message> turns = {{"system", "SYS"}, {"user", "U1"}, {"assistant", " A1 "}, {"user", "U2"}};
  // Nemo / Ministral (Tekken): no spaces, untrimmed answers, the system message in the last turn.
  const auto tekken = chat_template::recognise(
      "{%- if loop.last and system_message is defined %}{{- \"[INST]\" + system_message + \"\\n\\n\" + "
      "message[\"content\"] + \"[/INST]\" }}{%- else %}{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}"
      "{%- endif %}{{- message[\"content\"] + eos_token}}{{- bos_token }}",
      "nemo", "<s>", "</s>");
  EXPECT_EQ(tekken.render(turns), "<s>[INST]U1[/INST] A1 </s>[INST]SYS\n\nU2[/INST]");
  // v0.1 / v0.2: " [INST] " ... " [/INST]", the system message in the first user turn.
  const auto v1 = chat_template::recognise(
      "{{ bos_token }}{%- if loop.first and system_message is defined %}{{- ' [INST] ' + system_message + "
      "'\\n\\n' + message['content'] + ' [/INST]' }}{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}"
      "{%- endif %}{{- ' ' + message['content'] + eos_token}}",
      "v1", "<s>", "</s>");
  EXPECT_EQ(v1.render(turns), "<s> [INST] SYS\n\nU1 [/INST]  A1 </s> [INST] U2 [/INST]");
}

TEST(ChatTemplate, ChatMLDefaultSystemAndThinking) {
  // Qwen2.5's template writes a system message of its own when none is given.
  const auto qwen25 = chat_template::recognise(
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
      "helpful assistant.<|im_end|>\\n' }}{%- endif %}",
      "qwen2.5", "", "<|im_end|>");
  EXPECT_EQ(qwen25.default_system(), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  const std::vector<chat_message> hello = {{"user", "Hi"}};
  EXPECT_EQ(qwen25.render(hello),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  const std::vector<chat_message> with_system = {{"system", "S"}, {"user", "Hi"}};
  EXPECT_EQ(qwen25.render(with_system), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // A template without the enable_thinking switch ignores the option.
  pith::chat_render_options no_thinking;
  no_thinking.enable_thinking = false;
  EXPECT_EQ(qwen25.render(with_system, no_thinking), qwen25.render(with_system));
}

TEST(ChatTemplate, Llama31KnowledgeHeader) {
  const auto t = chat_template::recognise(
      "{{- bos_token }}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: "
      "December 2023\\n\" }}{{- \"Today Date: \" + date_string + \"\\n\\n\" }}{{- '<|eot_id|>' }}"
      "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
      "llama3.1", "<|begin_of_text|>", "<|eot_id|>");
  const std::vector<chat_message> messages = {{"system", " Be brief. "}, {"user", "Hi"}};
  EXPECT_EQ(t.render(messages),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  pith::chat_render_options options;
  options.add_generation_prompt = false;
  const std::vector<chat_message> user = {{"user", "Hi"}};
  EXPECT_EQ(t.render(user, options),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

// The reader wraps a document it has not read yet: before + content + after must be the rendering.
TEST(ChatTemplate, UserTurnFrameMatchesTheRendering) {
  const nlohmann::json data = load_vectors();
  for (const auto& entry : data["templates"]) {
    const auto tmpl = load_template(entry);
    if (!tmpl) continue;
    for (const std::optional<std::string>& system : {std::optional<std::string>(), std::optional<std::string>("Be brief.")}) {
      const auto frame = tmpl->user_turn(system);
      std::vector<chat_message> messages;
      if (system) messages.push_back({"system", *system});
      messages.push_back({"user", "Some document.\n\nWhat is it?"});
      EXPECT_EQ(frame.before + "Some document.\n\nWhat is it?" + frame.after, tmpl->render(messages))
          << entry["name"].get<std::string>();
    }
  }
}

TEST(ChatTemplate, TrimFollowsTheReference) {
  using pith::chat_detail::trim;
  EXPECT_EQ(trim(" \t\n a b \r\n"), "a b");
  EXPECT_EQ(trim("\xC2\xA0x\xE3\x80\x80"), "x");  // NBSP and the ideographic space are whitespace
  EXPECT_EQ(trim("\xE2\x80\x8Bx"), "\xE2\x80\x8Bx");  // the zero-width space is not
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(trim("\xFF "), "\xFF");  // a stray byte is kept
}

TEST(ChatTemplate, EncodesSpecialTokensOfTheVocabulary) {
  PITH_SHARED_MODEL_OR_SKIP(path, "ggml-vocab/ggml-vocab-llama-spm.gguf");
  const pith::tokenizer tok = pith::tokenizer::from_gguf(pith::gguf_file(path));
  const auto t = chat_template::recognise("{{ bos_token }}{{ '[INST] ' + c + '[/INST]' }}{{ eos_token }}", "t", "<s>", "</s>");
  // Llama 2's vocabulary has <s> and </s> but no [INST] token: [INST] stays text.
  const auto specials = pith::chat_special_ids(tok, t);
  EXPECT_EQ(specials, (std::vector<std::pair<std::string, std::int32_t>>{{"<s>", 1}, {"</s>", 2}}));
  const std::string text = "<s>[INST] Hi[/INST] Yo</s>";
  const auto ids = pith::encode_chat(tok, t, text);
  std::vector<std::int32_t> expected = {1};
  const auto middle = tok.encode("[INST] Hi[/INST] Yo", false);
  expected.insert(expected.end(), middle.begin(), middle.end());
  expected.push_back(2);
  EXPECT_EQ(ids, expected);
  // A vocabulary that parses its special tokens gives the same ids for the whole text.
  EXPECT_EQ(ids, tok.encode(text, false));
  EXPECT_EQ(pith::chat_stop_tokens(tok, t), (std::vector<std::int32_t>{2}));
  // A ChatML template on this vocabulary: no <|im_end|> token, so EOS alone stops.
  const auto chatml = chat_template::recognise("<|im_start|><|im_end|>", "t", "", "<|im_end|>");
  EXPECT_EQ(pith::chat_stop_tokens(tok, chatml), (std::vector<std::int32_t>{tok.eos_id()}));
}

TEST(ChatTemplate, WordVocabularyGetsItsBosAndEos) {
  // The toy models' word vocabulary does not parse token text; encode_chat cuts <s> and </s> out.
  const std::filesystem::path vocab = std::filesystem::path(PITH_TEST_DATA_DIR) / ".." / ".." / "examples" / "models" /
                                      "toy-block" / "vocab.json";
  const pith::tokenizer tok = pith::tokenizer::load_words(vocab);
  const auto t = chat_template::recognise("{{ bos_token }}{{ '[INST] ' + c + '[/INST]' }}{{ eos_token }}", "t", "<s>", "</s>");
  const auto ids = pith::encode_chat(tok, t, "<s>[INST] the code[/INST] 7</s>");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), tok.bos_id());
  EXPECT_EQ(ids.back(), tok.eos_id());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.bos_id()), 1);
}

TEST(ChatTemplate, GgufTemplateKey) {
  // tokenizer.chat_template, rendered with the vocabulary's BOS/EOS pieces.
  pith_test::temp_file file(".gguf");
  const std::vector<std::string> tokens = {"<unk>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"};
  file.write(pith_test::gguf_builder()
                 .header(0, 4)
                 .kv_string_array("tokenizer.ggml.tokens", tokens)
                 .kv<std::uint32_t>("tokenizer.ggml.bos_token_id", 4, 1)
                 .kv<std::uint32_t>("tokenizer.ggml.eos_token_id", 4, 2)
                 .kv_string("tokenizer.chat_template",
                            "{{ bos_token }}{{ '<start_of_turn>' + role + '\\n' + c + '<end_of_turn>\\n' }}")
                 .bytes());
  const auto t = chat_template::from_gguf(pith::gguf_file(file.path()));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->family(), chat_family::gemma);
  EXPECT_EQ(t->bos_token(), "<bos>");
  EXPECT_EQ(t->eos_token(), "<eos>");
  EXPECT_NE(t->source().find("tokenizer.chat_template"), std::string::npos);
  const std::vector<chat_message> hello = {{"user", " Hello "}};
  EXPECT_EQ(t->render(hello), "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");

  file.write(pith_test::gguf_builder().header(0, 1).kv_string("tokenizer.chat_template", "{{ x }}").bytes());
  PITH_EXPECT_THROW_WITH(chat_template::from_gguf(pith::gguf_file(file.path())), pith::format_error,
                         "tokenizer.chat_template: the chat template is not one pith recognises");
  file.write(pith_test::gguf_builder().header(0, 1).kv_string("general.name", "x").bytes());
  EXPECT_FALSE(chat_template::from_gguf(pith::gguf_file(file.path())));
}

}  // namespace
