"""One output record, with what its headers say available before anything is decoded."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .registry import SchemaRegistry

# The `priority` header's values, most urgent first (the event's `priority` field, as text).
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "NORMAL")


class Action(enum.Enum):
    """What a consumer must do with an event, by its kind."""

    STORE = "store"      # a measurement: keep it (upsert by event_id: a correction re-uses it)
    DELETE = "delete"    # DELETED: the vendor deleted a record; forget the event it names
    ERASE = "erase"      # USER_ERASED: forget everything about the user (GDPR Art. 17)


@dataclass(frozen=True)
class Envelope:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes
    timestamp_ms: int
    _registry: SchemaRegistry = field(repr=False, compare=False)

    @property
    def priority(self) -> str:
        """The `priority` header (NORMAL when absent): route urgent events before decoding."""
        return self.headers.get("priority", "NORMAL")

    @property
    def priority_rank(self) -> int:
        """0 for CRITICAL … 4 for NORMAL (and anything unknown), for priority queues."""
        try:
            return PRIORITIES.index(self.priority)
        except ValueError:
            return len(PRIORITIES) - 1

    @property
    def is_urgent(self) -> bool:
        return self.priority in ("CRITICAL", "HIGH")

    @property
    def event_type(self) -> str | None:
        """The `event-type` header: the event's kind (SLEEP, HRV, DELETED, USER_ERASED, …)."""
        return self.headers.get("event-type")

    @property
    def user_id(self) -> str | None:
        """The user (also the record key: all of a user's events are on one partition, in order)."""
        return self.headers.get("user-id", self.key)

    @property
    def event_id(self) -> str | None:
        """Stable id: a re-delivery or a correction carries the same one (upsert by it)."""
        return self.headers.get("event-id")

    @property
    def trace_id(self) -> str | None:
        """The trace id carried from the webhook's HTTP request (grep the bridge's logs for it)."""
        return self.headers.get("trace-id")

    @property
    def action(self) -> Action:
        if self.event_type == "DELETED":
            return Action.DELETE
        if self.event_type == "USER_ERASED":
            return Action.ERASE
        return Action.STORE

    async def decode(self) -> dict[str, Any]:
        """The BiometricEvent (schemas/biometric_event.avsc) as a dict."""
        return await self._registry.decode(self.value)
