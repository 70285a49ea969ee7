"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro binary datum.

Writer schemas are fetched by id from the registry (``GET /schemas/ids/{id}``) once and cached:
ids are immutable, so the cache never needs invalidating.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import ssl
import struct
import urllib.request
from typing import Any

import fastavro

MAGIC_BYTE = 0


class WireFormatError(ValueError):
    """The value is not in the Confluent wire format."""


class SchemaRegistry:
    """A caching reader of writer schemas, over the registry's Confluent-compatible API.

    ``basic_auth`` is ``"<key>:<secret>"`` (Confluent's ``basic.auth.user.info``); ``ca_file`` a
    PEM bundle for a private CA. ``reader_schema`` (a parsed Avro schema dict) makes every datum
    be resolved into the schema NEUROS was written against, the way Avro schema evolution
    intends; without it each event is read with its writer's schema.
    """

    def __init__(self, url: str, *, basic_auth: str | None = None, ca_file: str | None = None,
                 reader_schema: dict[str, Any] | None = None, timeout: float = 10.0) -> None:
        self._url = url.rstrip("/")
        self._headers = {"Accept": "application/vnd.schemaregistry.v1+json"}
        if basic_auth:
            self._headers["Authorization"] = "Basic " + base64.b64encode(basic_auth.encode()).decode()
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._timeout = timeout
        self._reader = fastavro.parse_schema(reader_schema) if reader_schema else None
        self._schemas: dict[int, Any] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def schema_id(value: bytes) -> int:
        """The schema id of a wire-format value, without decoding it."""
        if len(value) < 5:
            raise WireFormatError(f"{len(value)} bytes: shorter than the 5-byte header")
        magic, schema_id = struct.unpack(">bI", value[:5])
        if magic != MAGIC_BYTE:
            raise WireFormatError(f"magic byte {magic}, not {MAGIC_BYTE}")
        return schema_id

    async def writer_schema(self, schema_id: int) -> Any:
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        async with self._lock:
            if schema_id not in self._schemas:
                text = await asyncio.to_thread(self._fetch, schema_id)
                self._schemas[schema_id] = fastavro.parse_schema(json.loads(text))
        return self._schemas[schema_id]

    def _fetch(self, schema_id: int) -> str:
        request = urllib.request.Request(f"{self._url}/schemas/ids/{schema_id}", headers=self._headers)
        with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
            return json.loads(response.read())["schema"]

    async def decode(self, value: bytes) -> dict[str, Any]:
        """The datum of a wire-format value, as a dict (timestamps as timezone-aware datetimes)."""
        writer = await self.writer_schema(self.schema_id(value))
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, self._reader or writer)
