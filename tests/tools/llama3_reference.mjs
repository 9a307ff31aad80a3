// Reference for the Llama 3 differential test, built on the npm package
// llama3-tokenizer-js@1.2.0 (real Llama 3 vocabulary, merges and encoder).
//
//   node llama3_reference.mjs export OUT.json
//       writes a Hugging Face tokenizer.json with the package's vocabulary and
//       merges (merges in the [a, b] array form), the Llama 3 pre-tokenizer and
//       its 256 special tokens.
//   node llama3_reference.mjs encode INPUTS OUTPUTS
//       INPUTS: records (uint32 LE length, UTF-8 bytes); OUTPUTS: one line per
//       record, "R id id ..." (no BOS/EOS), R = 1 if the package decodes the
//       ids back to the input.
// Exits 77 when the package is not installed.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { encodeRecords } from './refio.mjs';

const src = process.env.FITLM_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const bundle = path.join(src, 'tests/node_modules/llama3-tokenizer-js/bundle/llama3-tokenizer-with-baked-data.js');
if (!fs.existsSync(bundle)) {
    console.log('SKIP: llama3-tokenizer-js is not installed (run scripts/setup.sh)');
    process.exit(77);
}
const tk = (await import(pathToFileURL(bundle).href)).default;

const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const N_BASE = 128000;

const [mode, a, b] = process.argv.slice(2);
if (mode === 'export') {
    const vocab = {};
    tk.vocabById.forEach((s, i) => { if (i < N_BASE) vocab[s] = i; });
    const merges = [...tk.merges.entries()].sort((x, y) => x[1] - y[1]).map(([k]) => {
        const sp = k.indexOf(' ', 1);
        return [k.slice(0, sp), k.slice(sp + 1)];
    });
    const added = [];
    for (let i = N_BASE; i < tk.vocabById.length; i++) {
        added.push({ id: i, content: tk.vocabById[i], single_word: false, lstrip: false, rstrip: false,
                     normalized: false, special: true });
    }
    const json = {
        version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
        pre_tokenizer: { type: 'Sequence', pretokenizers: [
            { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false } ] },
        post_processor: { type: 'TemplateProcessing',
            single: [ { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } } ],
            pair: [], special_tokens: {} },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
                 end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: true,
                 vocab, merges },
    };
    fs.writeFileSync(a, JSON.stringify(json));
} else if (mode === 'encode') {
    encodeRecords(a, b, (text) => tk.encode(text, { bos: false, eos: false }), (ids) => tk.decode(ids));
} else {
    console.error('usage: llama3_reference.mjs export OUT.json | encode INPUTS OUTPUTS');
    process.exit(2);
}
