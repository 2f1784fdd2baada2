// SPDX-License-Identifier: MIT
// Writes the reference token ids of tests/data/tokenizers/corpus.jsonl for the Llama 3, Qwen3 and Gemma 3
// tokenizer.json files, with the JavaScript port of Hugging Face tokenizers (npm @huggingface/tokenizers).
//
//   node tools/make_tokenizer_vectors.mjs --module /path/to/node_modules/@huggingface/tokenizers \
//        [--models ../shared/models/tokenizers] [--out tests/data/tokenizers]
//
// Corpus lines are JSON strings, or {"hex": "..."} for byte strings that are not valid UTF-8. A JS
// string cannot hold such bytes: they are decoded with TextDecoder (WHATWG UTF-8, not fatal), which
// replaces each maximal ill-formed subpart by U+FFFD, the way bytes become a string before the
// reference (or Python's tokenizers, or Rust's from_utf8_lossy) sees them; pith repairs its input the
// same way. Output, one file per tokenizer: a header line (reference, file hash, the tokens
// add_special_tokens puts around a text), then per corpus line {"ids": [...]} with "decoded" when
// decode(ids, skip_special_tokens) differs from the input text.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");
const module_dir = option("--module", null);
if (!module_dir) {
  console.error("make_tokenizer_vectors.mjs: --module DIR (the installed @huggingface/tokenizers package) is required");
  process.exit(2);
}
const models = option("--models", path.join(root, "..", "shared", "models", "tokenizers"));
const out_dir = option("--out", path.join(root, "tests", "data", "tokenizers"));

const package_json = JSON.parse(fs.readFileSync(path.join(module_dir, "package.json"), "utf8"));
const { Tokenizer } = await import(pathToFileURL(path.join(module_dir, "dist", "tokenizers.mjs")).href);

const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const corpus = fs
  .readFileSync(path.join(out_dir, "corpus.jsonl"), "utf8")
  .split("\n")
  .filter((line) => line.length > 0)
  .map((line) => {
    const value = JSON.parse(line);
    return typeof value === "string" ? value : decoder.decode(Buffer.from(value.hex, "hex"));
  });

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

for (const name of ["llama3", "qwen3", "gemma3"]) {
  const json_text = fs.readFileSync(path.join(models, name, "tokenizer.json"), "utf8");
  const config = JSON.parse(fs.readFileSync(path.join(models, name, "tokenizer_config.json"), "utf8"));
  const tokenizer = new Tokenizer(JSON.parse(json_text), config);
  // The tokens add_special_tokens adds around a text, found on one text and checked on every line.
  const plain = tokenizer.encode("x", { add_special_tokens: false }).ids;
  const special = tokenizer.encode("x", { add_special_tokens: true }).ids;
  const at = special.findIndex((_, i) => same(special.slice(i, i + plain.length), plain));
  const prefix = special.slice(0, at), suffix = special.slice(at + plain.length);
  const lines = [JSON.stringify({
    tokenizer: name,
    reference: `${package_json.name} ${package_json.version}`,
    sha256: createHash("sha256").update(json_text).digest("hex"),
    strings: corpus.length,
    special_prefix: prefix,
    special_suffix: suffix,
  })];
  for (const text of corpus) {
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    const with_special = tokenizer.encode(text, { add_special_tokens: true }).ids;
    if (!same(with_special, [...prefix, ...ids, ...suffix])) throw new Error(`${name}: special tokens differ on ${JSON.stringify(text)}`);
    const entry = { ids };
    const decoded = ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
    if (decoded !== text) entry.decoded = decoded;
    lines.push(JSON.stringify(entry));
  }
  fs.writeFileSync(path.join(out_dir, `${name}.jsonl`), lines.join("\n") + "\n");
  console.log(`${name}: ${corpus.length} strings`);
}
