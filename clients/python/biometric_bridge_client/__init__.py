"""A consumer for biometric-bridge's output topics (``terra-biometric-events``, ``biometric-events``).

    from biometric_bridge_client import EventConsumer

    async with EventConsumer(bootstrap_servers="kafka:9092",
                             registry_url="http://registry:8081/apis/ccompat/v7",
                             group_id="neuros") as events:
        async for envelope in events:
            if envelope.is_urgent:              # from the `priority` header: nothing decoded yet
                ...
            event = await envelope.decode()     # the BiometricEvent as a dict
            ...
            await events.commit()               # after handling: at-least-once for NEUROS

See README.md in this directory for the contract (topics, key, headers, event kinds, schema
evolution) and what to do on DELETED and USER_ERASED.
"""

from .consumer import EventConsumer, OUTPUT_TOPICS
from .envelope import Action, Envelope
from .registry import SchemaRegistry, WireFormatError

__all__ = ["Action", "Envelope", "EventConsumer", "OUTPUT_TOPICS", "SchemaRegistry", "WireFormatError"]
