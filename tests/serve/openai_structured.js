// Structured output through the official OpenAI Node client (npm `openai`):
// node openai_structured.js BASE_URL MODEL CASES.json
// CASES.json: [{"schema": {...} | null (json_object), "seed": N, "stream": bool}, ...] plus
// {"bad": {...schema}} entries that must be refused. Prints a JSON array of
// {content, finish, status, error} in the same order.
const OpenAI = require("openai");
const fs = require("fs");

async function main() {
  const [base, model, casesPath] = process.argv.slice(2);
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 600000 });
  const cases = JSON.parse(fs.readFileSync(casesPath, "utf8"));
  const out = [];
  for (const c of cases) {
    const schema = c.bad !== undefined ? c.bad : c.schema;
    const response_format = schema === null ? { type: "json_object" }
      : { type: "json_schema", json_schema: { name: "out", schema, strict: true } };
    const req = { model, messages: [{ role: "user", content: "Reply in JSON." }], max_tokens: c.max_tokens || 400,
                  temperature: 1.0, top_p: 1.0, seed: c.seed, response_format };
    try {
      if (c.stream) {
        const s = await client.chat.completions.create({ ...req, stream: true });
        let content = "", finish = null;
        for await (const chunk of s) {
          if (!chunk.choices.length) continue;
          if (chunk.choices[0].delta.content) content += chunk.choices[0].delta.content;
          if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
        }
        out.push({ content, finish });
      } else {
        const r = await client.chat.completions.create(req);
        out.push({ content: r.choices[0].message.content, finish: r.choices[0].finish_reason });
      }
    } catch (e) {
      out.push({ status: e.status || null, error: String(e.message || e) });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
