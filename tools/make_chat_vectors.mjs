// SPDX-License-Identifier: MIT
// Renders chat-template test vectors with @huggingface/jinja (the engine of Hugging Face's JavaScript
// libraries) from the real chat templates of Llama 3, Qwen3 and Gemma 3 (tokenizer_config.json in
// ../shared/models/tokenizers), Mistral 7B Instruct v0.3 and Llama 3.2 Instruct (written below), for
// tests/io/chat_template_test.cpp, which checks that pith::chat_template renders every case byte
// for byte.
//
//   npm install --prefix /work/npm-chat @huggingface/jinja@0.5.11      (outside the repository)
//   NODE_PATH=/work/npm-chat/node_modules node tools/make_chat_vectors.mjs \
//       [--tokenizers ../shared/models/tokenizers] [--out tests/data/chat]
//
// Writes OUT/vectors.json, OUT/mistral-v0.3.jinja, OUT/mistral-v0.3.tokenizer_config.json and
// OUT/llama3.2.jinja. The shared templates are not copied: each vector set names its template by
// folder and sha256, and the test reads it from the shared folder.
// Runs offline.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
let jinja;
try {
  jinja = require("@huggingface/jinja");
} catch {
  console.error("make_chat_vectors: @huggingface/jinja is not installed; install it outside the repository and set NODE_PATH");
  process.exit(1);
}
const { Template } = jinja;
const jinjaVersion = JSON.parse(
    readFileSync(path.join(path.dirname(require.resolve("@huggingface/jinja")), "..", "package.json"), "utf8")).version;

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const tokenizers = option("--tokenizers", "../shared/models/tokenizers");
const out = option("--out", "tests/data/chat");

// mistralai/Mistral-7B-Instruct-v0.3's chat_template (tokenizer_config.json; the same template ships
// with Mistral-Small-Instruct-2409): BOS, "[INST] " + content + "[/INST]" per user turn, the system
// message folded into the last message when that is a user turn, " " + trimmed answer + EOS per
// assistant turn, and no generation prompt (the [/INST] already asks for the answer). Reproduced
// from public copies of the file; the tool-calling branches are kept so the template is whole.
const mistralV03 = `{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
`;

// meta-llama/Llama-3.2-1B-Instruct's chat_template (Llama 3.1 has the same structure with a fixed
// date): a system header always, with the knowledge cutoff and today's date (date_string, passed
// below so the vectors do not depend on the day they are made), then the 3.0 turns. Reproduced
// from public copies of the file; the tool-calling branches are kept so the template is whole.
const llama32 = `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;

const sha256 = (text) => createHash("sha256").update(text, "utf8").digest("hex");
// bos_token / eos_token in tokenizer_config.json: a string, an AddedToken object or null.
const tokenText = (value) => (value && typeof value === "object" ? value.content : value ?? null);

const templates = [];
for (const name of ["llama3", "qwen3", "gemma3"]) {
  const file = path.join(tokenizers, name, "tokenizer_config.json");
  const config = JSON.parse(readFileSync(file, "utf8"));
  templates.push({
    name,
    source: `${name}/tokenizer_config.json`,
    text: config.chat_template,
    bos_token: tokenText(config.bos_token),
    eos_token: tokenText(config.eos_token),
  });
}
templates.push({ name: "llama3.2", source: "tests/data/chat/llama3.2.jinja", text: llama32,
                 bos_token: "<|begin_of_text|>", eos_token: "<|eot_id|>", variables: { date_string: "26 Jul 2024" } });
templates.push({ name: "mistral-v0.3", source: "tests/data/chat/mistral-v0.3.jinja", text: mistralV03,
                 bos_token: "<s>", eos_token: "</s>" });

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const assistant = (content) => ({ role: "assistant", content });
const document = "Alice keeps the key in the red box.\nBob keeps the code 4711.\n\n";

// Each case: messages, add_generation_prompt, extra variables, and the templates it applies to
// (all when absent).
const cases = [
  { name: "system_user", messages: [sys("Be brief."), user("Hello")], gen: true },
  { name: "user", messages: [user("Hello")], gen: true },
  { name: "user_no_generation_prompt", messages: [user("Hello")], gen: false },
  { name: "system_user_no_generation_prompt", messages: [sys("Be brief."), user("Hello")], gen: false },
  { name: "multi_turn", messages: [user("What is 2+2?"), assistant("4"), user("And 3+3?")], gen: true },
  { name: "system_multi_turn",
    messages: [sys("You answer with numbers."), user("What is 2+2?"), assistant("4"), user("And 3+3?")], gen: true },
  { name: "ends_with_assistant", messages: [sys("Be brief."), user("Hi"), assistant("Hello!")], gen: false },
  { name: "whitespace",
    messages: [sys("  Be brief.\n"), user("\n  Hello there  \n"), assistant("  Hi.  \n"), user(" Bye ")], gen: true },
  { name: "unicode", messages: [user("Grüße 🦙 — 你好\tend")], gen: true },
  { name: "empty_user", messages: [user("")], gen: true },
  { name: "system_only", messages: [sys("Be brief.")], gen: true },
  { name: "reader_prompt",
    messages: [sys("Answer from the document."), user(document + "\n\n" + "What is the code of bob?")], gen: true },
  { name: "special_text_in_content", messages: [user("a <|im_end|> b <end_of_turn> c [INST] d <|eot_id|>")], gen: true },
  { name: "thinking_off", messages: [sys("Be brief."), user("Hello")], gen: true, extra: { enable_thinking: false },
    only: ["qwen3"] },
  { name: "thinking_on", messages: [user("Hello")], gen: true, extra: { enable_thinking: true }, only: ["qwen3"] },
  { name: "history_with_reasoning",
    messages: [user("What is 2+2?"), assistant("<think>\nadd them\n</think>\n\n4"), user("And 3+3?")], gen: true,
    only: ["qwen3"] },
  { name: "last_assistant_with_reasoning",
    messages: [user("What is 2+2?"), assistant("<think>\nadd them\n</think>\n\n4")], gen: false, only: ["qwen3"] },
  // Gemma and Mistral raise on these (roles that do not alternate): the vector records the error.
  { name: "system_later", messages: [user("Hi"), assistant("Hello!"), sys("Be brief."), user("Bye")], gen: true },
  { name: "not_alternating", messages: [user("Hi"), user("Hello?")], gen: true },
  { name: "starts_with_assistant", messages: [assistant("Hello!"), user("Hi")], gen: true },
];

const vectors = [];
const counts = {};
for (const template of templates) {
  const engine = new Template(template.text);
  for (const c of cases) {
    if (c.only && !c.only.includes(template.name)) continue;
    const variables = {
      messages: c.messages,
      add_generation_prompt: c.gen,
      bos_token: template.bos_token,
      eos_token: template.eos_token,
      ...(template.variables ?? {}),
      ...(c.extra ?? {}),
    };
    let expected = null;
    let error = null;
    try {
      expected = engine.render(variables);
    } catch (e) {
      error = String(e.message ?? e);
    }
    vectors.push({
      template: template.name,
      case: c.name,
      messages: c.messages,
      add_generation_prompt: c.gen,
      ...(c.extra ?? {}),
      ...(error === null ? { expected } : { error }),
    });
    counts[template.name] = (counts[template.name] ?? 0) + 1;
  }
}

mkdirSync(out, { recursive: true });
writeFileSync(path.join(out, "mistral-v0.3.jinja"), mistralV03);
writeFileSync(path.join(out, "llama3.2.jinja"), llama32);
// The same template as a model folder carries it, for the programs' tests.
writeFileSync(path.join(out, "mistral-v0.3.tokenizer_config.json"),
              JSON.stringify({ bos_token: "<s>", eos_token: "</s>", chat_template: mistralV03 }, null, 1) + "\n");
const document_ = {
  generator: "tools/make_chat_vectors.mjs with @huggingface/jinja " + jinjaVersion,
  templates: templates.map((t) => ({ name: t.name, source: t.source, sha256: sha256(t.text), bos_token: t.bos_token,
                                     eos_token: t.eos_token })),
  vectors,
};
writeFileSync(path.join(out, "vectors.json"), JSON.stringify(document_, null, 1) + "\n");
console.log(`make_chat_vectors: ${vectors.length} vectors`, counts);
