"""Random JSON schemas for structured-output tests (the subset fitlm
compiles: docs/structured-output.md), and the ajv oracle.

    import schemas
    s = schemas.random_schema(random.Random(7))
    results = schemas.ajv_validate(SRC, [(schema, output_text), ...])  # [{"parsed", "valid", "errors"}]
"""
import json
import os
import subprocess

WORDS = ["red", "green", "blue", "x", "y z", "caf\u00e9", "a\"b", "1"]


def random_schema(rng, depth=0):
    """A schema whose every string has a maxLength and every array a maxItems,
    so a random model's constrained output ends in a few hundred tokens."""
    kinds = ["string", "integer", "number", "boolean", "null", "enum", "const"]
    if depth < 2:
        kinds += ["object", "object", "array", "anyOf", "nullable"]
    k = rng.choice(kinds)
    if k == "string":
        s = {"type": "string", "maxLength": rng.randint(0, 6)}
        if rng.random() < 0.3:
            s["minLength"] = rng.randint(0, s["maxLength"])
        return s
    if k in ("integer", "number", "boolean", "null"):
        return {"type": k}
    if k == "enum":
        vals = rng.sample(WORDS, rng.randint(1, 3)) + rng.sample([1, 2.5, True, None, [1, "a"], {"k": 1}], rng.randint(0, 2))
        return {"enum": vals}
    if k == "const":
        return {"const": rng.choice(WORDS + [{"a": [1, None]}, 7])}
    if k == "object":
        n = rng.randint(0, 4)
        props = {}
        for i in range(n):
            props["p%d_%s" % (i, rng.choice(["a", "b", "name", "\u00e9"]))] = random_schema(rng, depth + 1)
        req = [p for p in props if rng.random() < 0.6]
        s = {"type": "object", "properties": props, "required": req}
        if rng.random() < 0.5:
            s["additionalProperties"] = False
        return s
    if k == "array":
        lo = rng.randint(0, 2)
        return {"type": "array", "items": random_schema(rng, depth + 1), "minItems": lo, "maxItems": lo + rng.randint(0, 2)}
    if k == "anyOf":
        return {"anyOf": [random_schema(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    return {"type": [rng.choice(["string", "integer", "boolean"]), "null"], "maxLength": 4}


def ajv_validate(src, pairs):
    """Validates each (schema, output text) with ajv; a list of result dicts."""
    p = subprocess.run(["node", os.path.join(src, "tests", "serve", "ajv_check.js")],
                       input=json.dumps([{"schema": s, "output": o} for s, o in pairs]),
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NODE_PATH=os.path.join(src, "tests", "node_modules")))
    if p.returncode:
        raise RuntimeError("ajv_check.js failed: " + p.stderr[-2000:])
    return json.loads(p.stdout)
