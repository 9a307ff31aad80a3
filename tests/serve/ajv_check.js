// An independent JSON-schema validator (npm `ajv`, pinned in scripts/setup.sh)
// for structured-output tests: reads a JSON array of {schema, output} on
// stdin and prints a JSON array of {parsed, valid, errors} (output is the raw
// text a model produced; parsed is false when JSON.parse refuses it).
const Ajv = require("ajv");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const cases = JSON.parse(input);
  const res = cases.map(({ schema, output }) => {
    let value;
    try {
      value = JSON.parse(output);
    } catch (e) {
      return { parsed: false, valid: false, errors: String(e) };
    }
    const ajv = new Ajv({ strict: true, strictTypes: false, allErrors: true });
    const validate = ajv.compile(schema);
    const valid = validate(value);
    return { parsed: true, valid, errors: valid ? null : ajv.errorsText(validate.errors) };
  });
  process.stdout.write(JSON.stringify(res));
});
