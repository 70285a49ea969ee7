#!/usr/bin/env python3
"""Play Terra's Kafka destination for the demo: store a payload where the vendor API simulator
serves it behind an expiring, "pre-signed" URL, and publish Terra's pointer to it on a topic, as
Terra does (no key, no headers, SQS message format).

    terra_direct.py --bootstrap 127.0.0.1:9092 --topic terra-direct \\
        --storage-dir DIR --storage-url http://127.0.0.1:8890/terra/storage FILE [FILE...]

Each FILE is stored with fresh record ids (so a re-run is new data); one pointer per file,
`{"status":"success","type":"s3_payload","url":...,"expires_in":600}`. Uses aiokafka, the
client NEUROS uses, so the demo's Terra is not our own Kafka code.
"""

import argparse
import asyncio
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(__file__))
from send_webhook import as_new  # noqa: E402  (same fresh-id rule as the demo's webhooks)

EXPIRES_IN = 600  # Terra's Kafka pointers: 10 minutes


def store(path, storage_dir, storage_url, reference_id):
    """Stores the file's payload under a random name (for `reference_id`, our user id, when
    given: a payload behind a pointer is not signed, so it may be rewritten); returns its URL."""
    with open(path, "rb") as handle:
        body = as_new(handle.read())
    if reference_id:
        document = json.loads(body)
        # A Terra connection of its own: Terra's user id maps to our user through the identity
        # links (an `auth` event), and this one has none, so the reference id is the user.
        document["user"]["user_id"] = f"terra-{reference_id}"
        document["user"]["reference_id"] = reference_id
        body = json.dumps(document).encode()
    name = secrets.token_hex(16)
    with open(os.path.join(storage_dir, name), "wb") as handle:
        handle.write(body)
    return f"{storage_url}/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={EXPIRES_IN}&X-Amz-Signature={secrets.token_hex(32)}"


async def publish(bootstrap, topic, urls):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for url in urls:
            pointer = {"status": "success", "type": "s3_payload", "url": url, "expires_in": EXPIRES_IN}
            metadata = await producer.send_and_wait(topic, json.dumps(pointer).encode())
            print(f"terra-direct pointer -> {metadata.topic}/{metadata.partition}/{metadata.offset} (payload valid {EXPIRES_IN} s)")
        healthcheck = await producer.send_and_wait(topic, b'{"status":"success","type":"healthcheck"}')
        print(f"terra-direct healthcheck -> {healthcheck.topic}/{healthcheck.partition}/{healthcheck.offset}")
    finally:
        await producer.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="terra-direct")
    parser.add_argument("--storage-dir", required=True)
    parser.add_argument("--storage-url", required=True)
    parser.add_argument("--reference-id", help="our user id to put in the payloads (user.reference_id)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.storage_dir, exist_ok=True)
    urls = [store(path, args.storage_dir, args.storage_url, args.reference_id) for path in args.files]
    asyncio.run(publish(args.bootstrap, args.topic, urls))


if __name__ == "__main__":
    main()
