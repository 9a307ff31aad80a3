// Times llama.cpp on a GGUF file the way `fitlm bench` times fitlm: pp = one
// prompt of P random tokens evaluated from an empty cache, tg = N tokens
// decoded one at a time from an empty cache (greedy). llama.cpp is the build
// node-llama-cpp ships prebuilt (CPU only here: gpu false, the best CPU
// variant ggml picks for this processor, e.g. zen4).
//
//   node bench/llamacpp/llamacpp_bench.mjs MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS]
//
// Prints one JSON line: {"pp": [tokens/s per rep], "tg": [...], "system_info": ...}.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import os from "node:os";

const args = process.argv.slice(2);
if (args.length < 1) {
    console.error("usage: llamacpp_bench.mjs MODEL.gguf [-p 512] [-n 128] [-t THREADS] [-r REPS]");
    process.exit(2);
}
const opt = { p: 512, n: 128, t: os.availableParallelism(), r: 1 };
const model_path = args[0];
for (let i = 1; i + 1 < args.length; i += 2) {
    const k = args[i].replace(/^-+/, "");
    if (!(k in opt)) {
        console.error(`unknown option ${args[i]}`);
        process.exit(2);
    }
    opt[k] = Number(args[i + 1]);
}

const llama = await getLlama({ gpu: false, build: "never", maxThreads: opt.t, logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: model_path, gpuLayers: 0 });
const ctx = await model.createContext({
    contextSize: opt.p + opt.n + 8,
    batchSize: opt.p,
    threads: { ideal: opt.t, min: opt.t },
    sequences: 1,
});
const seq = ctx.getSequence();
// random ids from the ordinary part of the vocabulary (as fitlm bench does)
const n_vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 32000;
let rng = 12345;
const rnd = () => ((rng = (rng * 1103515245 + 12345) >>> 0) % (n_vocab - 300)) + 300;

const pp = [], tg = [];
// warm-up: a short prompt and a few decode steps (pages the weights in)
await seq.evaluateWithoutGeneratingNewTokens(Array.from({ length: 16 }, rnd));
await seq.clearHistory();
for (let rep = 0; rep < opt.r; rep++) {
    if (opt.p > 0) {
        const toks = Array.from({ length: opt.p }, rnd);
        const t0 = process.hrtime.bigint();
        await seq.evaluateWithoutGeneratingNewTokens(toks);
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        pp.push(opt.p / dt);
        await seq.clearHistory();
    }
    if (opt.n > 0) {
        let n = 0;
        const t0 = process.hrtime.bigint();
        for await (const tok of seq.evaluate([rnd()], { temperature: 0 })) {
            void tok;
            if (++n >= opt.n) break;
        }
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        tg.push(opt.n / dt);
        await seq.clearHistory();
    }
}
console.log(JSON.stringify({ pp, tg, threads: opt.t, n_vocab, system_info: llama.systemInfo }));
await ctx.dispose();
await model.dispose();
await llama.dispose();
