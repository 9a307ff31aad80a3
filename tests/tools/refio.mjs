// Shared by the node reference scripts of the tokenizer differential tests
// (tests/support/refio.h is the C side): reads the records the test wrote
// (uint32 LE length, UTF-8 bytes) and writes one line per record,
// "R id id ...", R = 1 if decode(encode(text)) gives the text back.
import fs from 'node:fs';

export function encodeRecords(inputs, outputs, encode, decode) {
    const data = fs.readFileSync(inputs);
    const dec = new TextDecoder('utf-8', { fatal: true });
    const lines = [];
    for (let pos = 0; pos < data.length;) {
        const n = data.readUInt32LE(pos);
        pos += 4;
        const text = dec.decode(data.subarray(pos, pos + n));
        pos += n;
        const ids = encode(text);
        const back = decode(ids) === text ? 1 : 0;
        lines.push(back + (ids.length ? ' ' + ids.join(' ') : ''));
    }
    fs.writeFileSync(outputs, lines.join('\n') + '\n');
}
