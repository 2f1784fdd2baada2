// SPDX-License-Identifier: MIT
// A program outside pith's tree that uses pith::bpe: a byte-level BPE tokenizer.json read from text, one word encoded and decoded.
#include <cstdio>
#include <string>

#include <pith/io/tokenizer_bpe.hpp>

int main() {
  // Bytes 'h' and 'i' as GPT-2's characters (themselves), one merge "h i" -> "hi" (id 2).
  const std::string json = R"({"model": {"type": "BPE", "vocab": {"h": 0, "i": 1, "hi": 2}, "merges": ["h i"]},
                               "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
                               "decoder": {"type": "ByteLevel"}})";
  const pith::tokenizer tok = pith::make_tokenizer(pith::bpe_tokenizer::parse_json(json, "", "app.json"));
  const auto ids = tok.encode("hi", false);
  const bool ok = ids.size() == 1 && ids[0] == 2 && tok.decode_all(ids) == "hi";
  std::printf("pith::bpe: \"hi\" -> %zu token(s) %s\n", ids.size(), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
