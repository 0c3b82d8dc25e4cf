#!/usr/bin/env python3
"""Writes schemas/avro/test-vectors.json: the Parsing Canonical Form (PCF) and CRC-64-AVRO fingerprint of every
.avsc under schemas/avro/, plus a few edge cases, as fastavro computes them.

kerp-schemas computes both itself; its unit tests compare against this file. The vectors come from fastavro on
purpose: an implementation other than apache-avro, whose canonical form kept logical types and so gave every
schema a fingerprint no other Avro reader recognises.

    python3 -m pip install fastavro==1.13.1
    python3 schemas/tools/pcf_vectors.py          # rewrite the vectors
    python3 schemas/tools/pcf_vectors.py --check  # exit 1 if the committed vectors are stale

Run it after adding or changing any .avsc, and commit the result with the schema.
"""

import json
import pathlib
import sys

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

AVRO_DIR = pathlib.Path(__file__).resolve().parent.parent / "avro"
VECTORS = AVRO_DIR / "test-vectors.json"

# Schema texts that exercise the rules our .avsc files do not reach yet: namespaces (inherited, overridden, reset
# by an empty one, dotted names), references to types defined earlier, enum and fixed, logical types on every
# kind of base, attributes to strip, escapes to replace, and whitespace. Each is given as text, because the PCF is
# a function of the schema text.
CASES = {
    "primitive name": '"int"',
    "primitive as object": '{"type": "bytes"}',
    "logical type on a string": '{"type": "string", "logicalType": "uuid"}',
    "logical type on a long, with a doc": '{"doc": "when", "logicalType": "timestamp-micros", "type": "long"}',
    "decimal on bytes": '{"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 2}',
    "union with a logical type": '[ "null", {"type": "int", "logicalType": "date"} ]',
    "map of arrays": '{"values": {"items": "double", "type": "array"}, "type": "map", "default": {}}',
    "enum": (
        '{"type": "enum", "name": "Side", "namespace": "kerp.test", "doc": "side", "aliases": ["S"],'
        ' "symbols": ["DEBIT", "\\u0043REDIT"], "default": "DEBIT"}'
    ),
    "fixed with logical types": (
        '{"type": "record", "name": "Amounts", "fields": ['
        '{"name": "money", "type": {"type": "fixed", "name": "Money", "size": 16, "logicalType": "decimal",'
        ' "precision": 38, "scale": 2}},'
        '{"name": "span", "type": {"type": "fixed", "name": "Span", "namespace": "time", "size": 12,'
        ' "logicalType": "duration"}}]}'
    ),
    "namespaces and references": """{
      "type": "record", "name": "Outer", "namespace": "a.b", "aliases": ["Old"], "doc": "x",
      "fields": [
        {"type": {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long", "order": "descending"}]},
         "name": "inner", "default": {"n": 1}},
        {"name": "again", "type": "Inner"},
        {"name": "again_full", "type": ["null", "a.b.Inner"]},
        {"name": "other", "type": {"type": "record", "name": "c.d.Other", "fields": [
          {"name": "deeper", "type": {"type": "enum", "name": "E", "symbols": ["X"]}}]}},
        {"name": "e_again", "type": "c.d.E"},
        {"name": "global", "type": {"type": "fixed", "name": "G", "namespace": "", "size": 4}},
        {"name": "arr", "type": {"type": "array", "items": "Inner"}}
      ]
    }""",
    "error is a record": '{"type": "error", "name": "Oops", "fields": [{"name": "why", "type": "string"}]}',
}


def entry(text):
    pcf = to_parsing_canonical_form(json.loads(text))
    # fastavro gives the 8 fingerprint bytes little-endian, as they stand in a single-object header.
    return {"pcf": pcf, "fingerprint_le_hex": fingerprint(pcf, "CRC-64-AVRO")}


def vectors():
    files = sorted(p for p in AVRO_DIR.rglob("*.avsc"))
    return {
        "generated_by": f"schemas/tools/pcf_vectors.py with fastavro {fastavro.__version__}",
        "fingerprint": "CRC-64-AVRO of the UTF-8 PCF; fingerprint_le_hex is its 8 bytes little-endian, as in the header",
        "files": [{"path": p.relative_to(AVRO_DIR).as_posix(), **entry(p.read_text(encoding="utf-8"))} for p in files],
        "cases": [{"name": name, "schema": text, **entry(text)} for name, text in CASES.items()],
    }


def main():
    text = json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        if VECTORS.read_text(encoding="utf-8") != text:
            sys.exit(f"{VECTORS} is stale: run schemas/tools/pcf_vectors.py")
        print(f"{VECTORS} is up to date")
    elif sys.argv[1:]:
        sys.exit("usage: pcf_vectors.py [--check]")
    else:
        VECTORS.write_text(text, encoding="utf-8")
        print(f"wrote {VECTORS}")


if __name__ == "__main__":
    main()
