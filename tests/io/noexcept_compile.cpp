// SPDX-License-Identifier: MIT
// Compile check: every io header builds with -fno-exceptions (errors then print and abort).
#include <pith/io/chat_template.hpp>
#include <pith/io/file_tensor.hpp>
#include <pith/io/gguf.hpp>
#include <pith/io/half.hpp>
#include <pith/io/llama2c.hpp>
#include <pith/io/mmap.hpp>
#include <pith/io/safetensors.hpp>
#include <pith/io/tokenizer.hpp>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#error "this file must be compiled with -fno-exceptions"
#endif

// Instantiate the templates and inline functions a user would call.
int pith_io_noexcept_uses(const char* path) {
  const pith::gguf_file gguf(path);
  const pith::safetensors_file safetensors(path);
  const pith::llama2c_checkpoint checkpoint(path);
  const auto tokenizer = pith::tokenizer::from_gguf(gguf);
  const auto words = pith::tokenizer::load_words(path);
  const auto values = pith::to_float(safetensors.tensor("x"));
  const auto chat = pith::chat_template::from_tokenizer_config(path);
  const std::vector<pith::chat_message> messages = {{"user", "x"}};
  const std::size_t chat_bytes = chat ? chat->render(messages).size() + pith::encode_chat(tokenizer, *chat, "x").size() +
                                          pith::chat_stop_tokens(tokenizer, *chat).size() : 0;
  return static_cast<int>(gguf.get_array<float>("k").size() + gguf.get_uint32("n") + values.size() +
                          tokenizer.encode("x", true).size() + words.decode(0, 1).size() + chat_bytes +
                          static_cast<std::size_t>(checkpoint.config().dim));
}
