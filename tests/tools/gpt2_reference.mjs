// Reference for the GPT-2 differential test: the npm package gpt-tokenizer@2.9.0,
// encoding r50k_base (GPT-2's 50257-token vocabulary and merges, OpenAI's regex).
//
//   node gpt2_reference.mjs INPUTS OUTPUTS
//       INPUTS: records (uint32 LE length, UTF-8 bytes); OUTPUTS: one line per
//       record, "R id id ...", R = 1 if the package decodes the ids back to the input.
// Exits 77 when the package is not installed.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import { encodeRecords } from './refio.mjs';

const src = process.env.FITLM_SRC || path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const pkg = path.join(src, 'tests/node_modules/gpt-tokenizer');
if (!fs.existsSync(path.join(pkg, 'package.json'))) {
    console.log('SKIP: gpt-tokenizer is not installed (run scripts/setup.sh)');
    process.exit(77);
}
const require = createRequire(path.join(pkg, 'package.json'));
const enc = require(path.join(pkg, 'cjs/encoding/r50k_base.js'));

const [inputs, outputs] = process.argv.slice(2);
encodeRecords(inputs, outputs, (text) => enc.encode(text, { disallowedSpecial: new Set() }), (ids) => enc.decode(ids));
