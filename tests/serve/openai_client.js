// The official OpenAI Node client (npm `openai`, pinned in scripts/setup.sh)
// against a running `fitlm serve`: node openai_client.js BASE_URL API_KEY MODEL
// Prints one JSON object with what the client parsed (texts, finish reasons,
// usage, logprobs, the error classes it raised); test_serve_openai.py checks
// it against fitlm's own tools. Exits 2 if the client itself throws where it
// should not.
const OpenAI = require("openai");

async function main() {
  const [base, key, model] = process.argv.slice(2);
  const client = new OpenAI({ baseURL: base + "/v1", apiKey: key, maxRetries: 0, timeout: 300000 });
  const out = {};

  const models = await client.models.list();
  out.models = models.data.map((m) => m.id);

  // chat, non-streaming and streaming (usage in the last chunk)
  const messages = [{ role: "user", content: "Tell me a story" }];
  const c1 = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
  out.chat = { text: c1.choices[0].message.content, role: c1.choices[0].message.role,
               finish: c1.choices[0].finish_reason, usage: c1.usage, object: c1.object };
  const s1 = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, stream: true,
                                                    stream_options: { include_usage: true } });
  let text = "", role = null, finish = null, usage = null, n = 0;
  for await (const chunk of s1) {
    n++;
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    const ch = chunk.choices[0];
    if (ch.delta.role) role = ch.delta.role;
    if (ch.delta.content) text += ch.delta.content;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  out.chat_stream = { text, role, finish, usage, chunks: n };

  // chat with a system message and content parts
  const c2 = await client.chat.completions.create({
    model, max_tokens: 6, temperature: 0,
    messages: [{ role: "system", content: "Answer briefly." },
               { role: "user", content: [{ type: "text", text: "Tell me a story" }] }] });
  out.chat_system = { text: c2.choices[0].message.content, usage: c2.usage };

  // completions, with logprobs, streaming and not
  const prompt = "Once upon a time there was";
  const p1 = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, logprobs: 3 });
  out.completion = { text: p1.choices[0].text, finish: p1.choices[0].finish_reason, usage: p1.usage,
                     logprobs: p1.choices[0].logprobs };
  const s2 = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, stream: true,
                                               stream_options: { include_usage: true } });
  text = ""; finish = null; usage = null;
  for await (const chunk of s2) {
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  out.completion_stream = { text, finish, usage };

  // stop strings: cut the greedy text before a word of it
  const words = p1.choices[0].text.trim().split(/\s+/);
  const stopWord = words.length > 2 ? words[2] : null;
  out.stop_word = stopWord;
  if (stopWord) {
    const p2 = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, stop: [stopWord] });
    out.stop = { text: p2.choices[0].text, finish: p2.choices[0].finish_reason, usage: p2.usage };
    const s3 = await client.completions.create({ model, prompt, max_tokens: 10, temperature: 0, stop: stopWord,
                                                 stream: true });
    text = ""; finish = null;
    for await (const chunk of s3) {
      text += chunk.choices[0].text;
      if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    }
    out.stop_stream = { text, finish };
  }

  // seeded sampling is reproducible
  const seeded = [];
  for (let i = 0; i < 2; i++) {
    const r = await client.completions.create({ model, prompt, max_tokens: 8, temperature: 1.0, seed: 1234 });
    seeded.push(r.choices[0].text);
  }
  out.seeded = seeded;

  // errors surface as the client's classes
  out.errors = {};
  const tryErr = async (name, fn) => {
    try {
      await fn();
      out.errors[name] = "no error";
    } catch (e) {
      out.errors[name] = { class: e.constructor.name, status: e.status,
                           bad: e instanceof OpenAI.BadRequestError, auth: e instanceof OpenAI.AuthenticationError,
                           notfound: e instanceof OpenAI.NotFoundError, message: String(e.message) };
    }
  };
  await tryErr("temperature", () => client.completions.create({ model, prompt, temperature: 5 }));
  await tryErr("context", () => client.completions.create({ model, prompt, max_tokens: 100000 }));
  await tryErr("model", () => client.completions.create({ model: "no-such-model", prompt }));
  const wrong = new OpenAI({ baseURL: base + "/v1", apiKey: "wrong-key", maxRetries: 0 });
  await tryErr("key", () => wrong.completions.create({ model, prompt }));
  await tryErr("stream_bad", async () => {
    const s = await client.chat.completions.create({ model, messages: [{ role: "tool", content: "x" }], stream: true });
    for await (const _ of s) { /* nothing */ }
  });
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error("client failed:", e);
  process.exit(2);
});
