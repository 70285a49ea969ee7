"""An aiokafka consumer of the output topics, configured as the bridge's contract requires."""

from __future__ import annotations

from typing import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer

from .envelope import Envelope
from .registry import SchemaRegistry

# The topology's event sinks (topologies/biometric.toml); a TOPOLOGY_NAMESPACE suffixes them.
OUTPUT_TOPICS = ("terra-biometric-events", "biometric-events")


class EventConsumer:
    """Reads the output topics read_committed, yielding :class:`Envelope` records.

    - ``isolation_level=read_committed``: the processor writes inside Kafka transactions; a
      read_uncommitted consumer would also see the records of aborted ones (duplicates).
    - Offsets are committed by the caller (:meth:`commit`) after handling, never automatically,
      so a crash re-delivers rather than loses. Handle idempotently: upsert by ``event_id``.
    - Extra keyword arguments go to ``AIOKafkaConsumer`` (``security_protocol="SASL_SSL"``,
      ``sasl_mechanism="SCRAM-SHA-512"``, ``ssl_context``, ``auto_offset_reset``, …).
    """

    def __init__(self, *, bootstrap_servers: str, registry_url: str, group_id: str,
                 topics: Iterable[str] = OUTPUT_TOPICS, namespace: str | None = None,
                 registry: SchemaRegistry | None = None, **kafka_options) -> None:
        # TOPOLOGY_NAMESPACE suffixes every topic: `biometric-events-<namespace>`.
        suffix = f"-{namespace}" if namespace else ""
        self.topics = [topic + suffix for topic in topics]
        self.registry = registry or SchemaRegistry(registry_url)
        options = {"auto_offset_reset": "earliest", **kafka_options}
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            **options,
        )

    async def __aenter__(self) -> "EventConsumer":
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._records()

    async def _records(self) -> AsyncIterator[Envelope]:
        async for record in self._consumer:
            yield self._envelope(record)

    async def batch(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[Envelope]:
        """The records of one fetch, most urgent first (stable: a user's order is kept within
        one priority), for callers that route urgent events ahead of the rest."""
        fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        envelopes = [self._envelope(record) for records in fetched.values() for record in records]
        return sorted(envelopes, key=lambda envelope: envelope.priority_rank)

    async def commit(self) -> None:
        """Commits what has been handed out so far."""
        await self._consumer.commit()

    def _envelope(self, record) -> Envelope:
        headers = {key: (value or b"").decode("utf-8", "replace") for key, value in (record.headers or ())}
        return Envelope(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key.decode("utf-8", "replace") if record.key is not None else None,
            headers=headers,
            value=record.value,
            timestamp_ms=record.timestamp,
            _registry=self.registry,
        )
