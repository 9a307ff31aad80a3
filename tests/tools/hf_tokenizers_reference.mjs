// Reference encoder for the added-token tests (test_tokenizer_added_strip.py):
// Hugging Face's tokenizers.js (npm @huggingface/tokenizers, pure JavaScript,
// an implementation independent of fitlm's) loads a local tokenizer.json (and
// tokenizer_config.json) object, no network; encodes each input without
// special tokens.
// usage: node hf_tokenizers_reference.mjs TOKENIZER.json CONFIG.json INPUTS.json OUT.json
// INPUTS.json: a JSON array of strings; OUT.json: an array of id arrays.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require(process.env.NODE_PATH + '/@huggingface/tokenizers');
const [tokPath, cfgPath, inPath, outPath] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(fs.readFileSync(tokPath, 'utf8')), JSON.parse(fs.readFileSync(cfgPath, 'utf8')));
const inputs = JSON.parse(fs.readFileSync(inPath, 'utf8'));
const out = inputs.map((s) => tok.encode(s, { add_special_tokens: false }).ids);
fs.writeFileSync(outPath, JSON.stringify(out));
