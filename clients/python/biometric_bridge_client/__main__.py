"""``python -m biometric_bridge_client``: print the output topics' events as JSON lines.

    python -m biometric_bridge_client --bootstrap 127.0.0.1:9092 \
        --registry http://127.0.0.1:8081/apis/ccompat/v7 --group neuros-dev [--topic T ...] \
        [--max-events N] [--idle-timeout SECS] [--commit]

Each line: topic, partition, offset, key, the headers NEUROS routes on (priority, event-type,
user-id, event-id, trace-id), the action (store, delete, erase) and the decoded event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from .consumer import OUTPUT_TOPICS, EventConsumer
from .registry import SchemaRegistry


def _plain(value):
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    raise TypeError(type(value))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m biometric_bridge_client", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="schema registry base URL (Confluent-compatible API)")
    parser.add_argument("--group", required=True, help="consumer group id")
    parser.add_argument("--topic", action="append", help=f"topic to read (repeatable; default: {', '.join(OUTPUT_TOPICS)})")
    parser.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--idle-timeout", type=float, default=None, help="stop after this many seconds without an event")
    parser.add_argument("--commit", action="store_true", help="commit offsets after printing")
    args = parser.parse_args(argv)

    printed = 0
    registry = SchemaRegistry(args.registry)
    async with EventConsumer(bootstrap_servers=args.bootstrap, registry_url=args.registry, group_id=args.group,
                             topics=args.topic or OUTPUT_TOPICS, registry=registry) as events:
        last = time.monotonic()
        while args.max_events is None or printed < args.max_events:
            batch = await events.batch(timeout_ms=500)
            if not batch:
                if args.idle_timeout is not None and time.monotonic() - last > args.idle_timeout:
                    break
                continue
            last = time.monotonic()
            for envelope in batch:
                line = {
                    "topic": envelope.topic, "partition": envelope.partition, "offset": envelope.offset,
                    "key": envelope.key, "priority": envelope.priority, "event_type": envelope.event_type,
                    "user_id": envelope.user_id, "event_id": envelope.event_id, "trace_id": envelope.trace_id,
                    "action": envelope.action.value, "schema_id": SchemaRegistry.schema_id(envelope.value),
                    "event": await envelope.decode(),
                }
                print(json.dumps(line, default=_plain), flush=True)
                printed += 1
            if args.commit:
                await events.commit()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
