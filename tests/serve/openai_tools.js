// Tool calls through the official OpenAI Node client (npm `openai`, pinned in
// scripts/setup.sh): node openai_tools.js BASE_URL MODEL CASES.json
// CASES.json: [{"messages", "tools", "tool_choice", "seed", "max_tokens", "stream": bool,
// "expect_error": bool}, ...]. Streams go through the client's own accumulator
// (client.beta.chat.completions.stream -> finalChatCompletion), which builds
// message.tool_calls from the deltas as OpenAI sends them; the raw deltas are
// also checked here (argPieces: per call, the deltas with a piece of its
// arguments). Prints a JSON array of {message, finish, deltas} or
// {error, status, bad} in the same order.
const OpenAI = require("openai");
const fs = require("fs");

const MARKUP = ["<tool_call>", "</tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<think>", "</think>"];

async function main() {
  const [base, model, casesPath] = process.argv.slice(2);
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 600000 });
  const cases = JSON.parse(fs.readFileSync(casesPath, "utf8"));
  const out = [];
  for (const c of cases) {
    const req = { model, messages: c.messages, max_tokens: c.max_tokens || 300, temperature: 1.0, top_p: 1.0,
                  seed: c.seed };
    if (c.tools !== undefined) req.tools = c.tools;
    if (c.tool_choice !== undefined) req.tool_choice = c.tool_choice;
    if (c.parallel_tool_calls !== undefined) req.parallel_tool_calls = c.parallel_tool_calls;
    try {
      if (c.stream) {
        const problems = [];
        let content = "", reasoning = "";
        const seen = new Set();
        const argPieces = {}; // per call index: how many deltas carried a non-empty piece of its arguments
        const stream = client.beta.chat.completions.stream({ ...req, stream: true });
        stream.on("chunk", (chunk) => {
          if (!chunk.choices.length) return;
          const d = chunk.choices[0].delta;
          if (typeof d.content === "string") {
            content += d.content;
            for (const m of MARKUP) if (d.content.includes(m)) problems.push("markup in a content delta: " + d.content);
          }
          if (typeof d.reasoning_content === "string") reasoning += d.reasoning_content;
          for (const tc of d.tool_calls || []) {
            if (!seen.has(tc.index)) { // the first delta of a call: index, id, type, name, arguments ""
              seen.add(tc.index);
              if (!tc.id || tc.type !== "function" || !tc.function || !tc.function.name || tc.function.arguments !== "")
                problems.push("first delta of call " + tc.index + ": " + JSON.stringify(tc));
            } else if (tc.id || tc.type || tc.function.name || typeof tc.function.arguments !== "string") {
              problems.push("later delta of call " + tc.index + ": " + JSON.stringify(tc));
            } else if (tc.function.arguments !== "") {
              argPieces[tc.index] = (argPieces[tc.index] || 0) + 1;
            }
          }
        });
        const fin = await stream.finalChatCompletion();
        out.push({ message: fin.choices[0].message, finish: fin.choices[0].finish_reason,
                   deltas: { content, reasoning, problems, argPieces } });
      } else {
        const r = await client.chat.completions.create(req);
        out.push({ message: r.choices[0].message, finish: r.choices[0].finish_reason, usage: r.usage });
      }
    } catch (e) {
      out.push({ error: String(e.message || e), status: e.status || null, bad: e instanceof OpenAI.BadRequestError });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
