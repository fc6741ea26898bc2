#!/usr/bin/env python3
"""Validates recorded HTTP answers against Keyfactor's published OpenAPI documents.

Usage: openapi_check.py REFERENCE_DIR RECORDS.json

REFERENCE_DIR holds Keyfactor's documents (the 2022 v1 YAML and the Command 25
v2 JSON); they are read from there, never copied into the project.  RECORDS is
a JSON array of {"method", "path" (as sent, under the API base), "status",
"body" (the raw answer text), "version" (x-keyfactor-api-version)}.

Prints one JSON object: {"checked": n, "endpoints": {"GET /X/{id}": n, ...},
"no_schema": ["METHOD /path", ...], "errors": [{"request", "error"}, ...]}.

How OpenAPI 3.0 is read as JSON Schema (draft 4: integers are integers, 1.0 is
not one):
- `nullable: true` admits null.  In the 2022 v1 document plain strings also
  admit null: that document never marks strings nullable although the real
  server sends null for them (a known quirk of it; the v2 one marks them).
  Strings of format uuid do not: they are .NET Guids, which cannot be null.
- `{type: object}` with neither properties nor additionalProperties is .NET's
  `object`, which any JSON value satisfies.
- Formats are checked: int32/int64 ranges, uuid, date-time (ISO 8601 with a
  zone), byte (base64).
- Besides the schema, every property of an answer must be one the schema names
  (with that exact casing): a mis-cased or invented key is what a generated
  client silently drops.
- An error answer (4xx/5xx the document does not describe) must be Keyfactor's
  error body: {"ErrorCode": "0x........", "Message": "..."}.
"""
import base64
import datetime
import glob
import json
import os
import re
import sys

import jsonschema
import yaml

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?(Z|[+-]\d\d:\d\d)$")
ERROR_CODE = re.compile(r"^0x[0-9A-Fa-f]{8}$")

formats = jsonschema.FormatChecker(formats=())


@formats.checks("int32")
def _int32(v):
    return not isinstance(v, int) or -2**31 <= v < 2**31


@formats.checks("int64")
def _int64(v):
    return not isinstance(v, int) or -2**63 <= v < 2**63


@formats.checks("uuid")
def _uuid(v):
    return not isinstance(v, str) or UUID.match(v) is not None


@formats.checks("date-time")
def _date_time(v):
    if not isinstance(v, str):
        return True
    if not DATE_TIME.match(v):
        return False
    try:
        datetime.datetime.fromisoformat(re.sub(r"\.\d+", "", v).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@formats.checks("byte")
def _byte(v):
    if not isinstance(v, str):
        return True
    try:
        base64.b64decode(v, validate=True)
    except ValueError:
        return False
    return True


def convert(s, strings_nullable):
    """An OpenAPI 3.0 schema object as a draft-4 JSON Schema."""
    if isinstance(s, list):
        return [convert(x, strings_nullable) for x in s]
    if not isinstance(s, dict):
        return s
    if "$ref" in s:
        return {"$ref": "#/definitions/" + s["$ref"].split("/")[-1]}
    out = {}
    for k, v in s.items():
        if k in ("properties",):
            out[k] = {name: convert(p, strings_nullable) for name, p in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = convert(v, strings_nullable)
        elif k in ("nullable", "readOnly", "example", "description", "x-nullable"):
            continue
        else:
            out[k] = v
    t = s.get("type")
    if t == "object" and not s.get("properties") and "additionalProperties" not in s:
        return {}
    # a uuid string is a .NET Guid, a value type: never null unless marked
    if s.get("nullable") or (strings_nullable and t == "string" and s.get("format") != "uuid"):
        if t:
            out["type"] = [t, "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    return out


class Document:
    def __init__(self, doc, strings_nullable):
        self.paths = []
        for template, ops in doc["paths"].items():
            parts = template.strip("/").split("/")
            literal = sum(1 for p in parts if not p.startswith("{"))
            self.paths.append((parts, literal, ops, template))
        # literal segments win over parameters, as the server routes
        self.paths.sort(key=lambda p: (-p[1], len(p[0])))
        schemas = doc.get("components", {}).get("schemas", {})
        self.definitions = {n: convert(s, strings_nullable) for n, s in schemas.items()}
        self.raw = schemas

    def match(self, method, path):
        segs = path.strip("/").split("/")
        for parts, _, ops, template in self.paths:
            if len(parts) != len(segs):
                continue
            if all(p.startswith("{") or p.lower() == s.lower() for p, s in zip(parts, segs)):
                if method.lower() in ops:
                    return template, ops[method.lower()]
        return None, None

    def validator(self, converted):
        root = dict(converted)
        root["definitions"] = self.definitions
        return jsonschema.Draft4Validator(root, format_checker=formats)


def response_schema(op, status):
    responses = op.get("responses", {})
    r = responses.get(str(status)) or (responses.get("default") if status < 300 else None)
    if r is None:
        return False, None
    content = r.get("content") or {}
    media = content.get("application/json") or content.get("text/json") or next(iter(content.values()), None)
    return True, media and media.get("schema")


def extra_properties(doc, schema, value, where, out, depth=0):
    """Keys of `value` the schema does not name (exact case)."""
    if depth > 30 or not isinstance(schema, dict):
        return
    if "$ref" in schema:
        schema = doc.raw.get(schema["$ref"].split("/")[-1], {})
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            extra_properties(doc, schema["items"], v, "%s[%d]" % (where, i), out, depth + 1)
    elif isinstance(value, dict):
        props = schema.get("properties")
        if props:
            for k, v in value.items():
                if k in props:
                    extra_properties(doc, props[k], v, where + "." + k, out, depth + 1)
                else:
                    near = [p for p in props if p.lower() == k.lower()]
                    out.append("%s.%s is not in the schema%s" % (where, k,
                               " (it spells it %s)" % near[0] if near else ""))
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in value.items():
                extra_properties(doc, schema["additionalProperties"], v, where + "." + k, out, depth + 1)


def error_body(value):
    if not isinstance(value, dict):
        return "the error answer is not a JSON object"
    if not isinstance(value.get("ErrorCode"), str) or not ERROR_CODE.match(value["ErrorCode"]):
        return "ErrorCode must be a hex string such as 0xA0100001"
    if not isinstance(value.get("Message"), str) or value["Message"] == "":
        return "Message must be a non-empty string"
    return None


def load(reference_dir):
    v1 = sorted(glob.glob(os.path.join(reference_dir, "*v1*.yaml")))
    v2 = sorted(glob.glob(os.path.join(reference_dir, "*v2*.json")))
    if not v1:
        raise SystemExit("no v1 OpenAPI YAML in " + reference_dir)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(v1[0]) as f:
        docs = {"1": Document(yaml.load(f, Loader=loader), True)}
    if v2:
        with open(v2[0]) as f:
            docs["2"] = Document(json.load(f), False)
    return docs


def check(docs, rec):
    method, path, status = rec["method"].upper(), rec["path"], int(rec["status"])
    text = rec.get("body") or ""
    version = str(rec.get("version") or "1").split(".")[0]
    doc = docs.get(version) or docs["1"]
    template, op = doc.match(method, path)
    if op is None and doc is not docs["1"]:
        doc = docs["1"]
        template, op = doc.match(method, path)
    if op is None:
        return None, []
    endpoint = "%s /%s" % (method, template.strip("/"))
    problems = []
    value = None
    if text.strip():
        try:
            value = json.loads(text)
        except ValueError as e:
            return endpoint, ["the answer is not JSON: %s" % e]
    described, schema = response_schema(op, status)
    if not described:
        if status >= 400:
            why = error_body(value)
            if why:
                problems.append(why)
        else:
            problems.append("status %d is not an answer the document describes" % status)
        return endpoint, problems
    if schema is None:
        if text.strip():
            problems.append("status %d has no body in the document, but one was sent" % status)
        return endpoint, problems
    for err in doc.validator(convert(schema, doc is docs["1"])).iter_errors(value):
        where = "$" + "".join("[%d]" % p if isinstance(p, int) else "." + str(p) for p in err.absolute_path)
        problems.append("%s: %s" % (where, err.message[:300]))
    extras = []
    extra_properties(doc, schema, value, "$", extras)
    problems.extend(extras)
    return endpoint, problems


def main():
    docs = load(sys.argv[1])
    with open(sys.argv[2]) as f:
        records = json.load(f)
    result = {"checked": 0, "endpoints": {}, "no_schema": [], "errors": []}
    for rec in records:
        endpoint, problems = check(docs, rec)
        request = "%s %s -> %s" % (rec["method"], rec["path"], rec["status"])
        if endpoint is None:
            key = "%s %s" % (rec["method"].upper(), rec["path"])
            if key not in result["no_schema"]:
                result["no_schema"].append(key)
            continue
        result["checked"] += 1
        result["endpoints"][endpoint] = result["endpoints"].get(endpoint, 0) + 1
        for p in problems:
            result["errors"].append({"request": request, "error": p})
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
