#!/usr/bin/env python3
"""Decode one Confluent wire-format Avro value with an independent Avro implementation.

    decode_confluent.py <value file> <schema registry base url>

Reads the magic byte and the 4-byte schema id, fetches the writer schema from the registry
(GET /schemas/ids/{id}, as any Confluent client does), decodes the datum with fastavro and
prints it as JSON (timestamps as epoch milliseconds). Used by the integration tests to prove the
events are readable by non-Rust consumers, not just by our own decoder.
"""
import io
import json
import struct
import sys
import urllib.request

import fastavro


def main():
    value = open(sys.argv[1], "rb").read()
    magic, schema_id = struct.unpack(">bI", value[:5])
    if magic != 0:
        raise SystemExit(f"magic byte is {magic}, not 0")
    with urllib.request.urlopen(f"{sys.argv[2]}/schemas/ids/{schema_id}", timeout=10) as response:
        schema = json.loads(json.loads(response.read())["schema"])
    parsed = fastavro.parse_schema(schema)
    record = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, parsed)

    def plain(obj):
        if hasattr(obj, "timestamp"):
            return int(obj.timestamp() * 1000)
        raise TypeError(type(obj))

    print(json.dumps({"schema_id": schema_id, "record": record}, default=plain))


if __name__ == "__main__":
    main()
