"""The loop shared by end consumers (``monitor``, ``print``): one topic, errors explicit.

End-of-partition is reported only when librdkafka says so; any other Kafka error is an
error (a fatal one, or a topic that does not exist, ends the loop with an exception),
never "end" (the 2018 mistake).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from broker import kafka_io

__all__ = ["EndConsumerError", "consume_topic", "header"]

log = logging.getLogger(__name__)


class EndConsumerError(RuntimeError):
    """A Kafka error that stops an end consumer; the message says what to do."""


def header(msg: Message, name: str) -> bytes | None:
    """The value of header ``name`` of ``msg``, or None."""
    headers = msg.headers() or []
    for key, value in headers:  # type: ignore[str-unpack]
        if key == name:
            return value if isinstance(value, bytes) else None
    return None


def consume_topic(
    bootstrap: str,
    topic: str,
    group_id: str,
    on_message: Callable[[Message], None],
    on_end: Callable[[Message], None],
    stop: threading.Event,
    on_error: Callable[[KafkaError], None] | None = None,
    **overrides: Any,
) -> None:
    """Consume ``topic`` until ``stop``; call ``on_end`` at each end of partition."""
    kafka_io.wait_for_broker(bootstrap)
    if not kafka_io.topic_exists(bootstrap, topic):
        raise EndConsumerError(
            f"topic {topic} does not exist: start the filter group that writes it, "
            "or check the name"
        )
    cons = kafka_io.consumer(bootstrap, group_id, auto_commit=True, **overrides)
    cons.subscribe([topic])
    try:
        while not stop.is_set():
            msg = cons.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                on_message(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                on_end(msg)
            else:
                if on_error is not None:
                    on_error(err)
                if err.fatal() or err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                 KafkaError._UNKNOWN_TOPIC,
                                                 KafkaError.TOPIC_AUTHORIZATION_FAILED):
                    raise EndConsumerError(f"Kafka error on {topic}: {err.str()}") from (
                        KafkaException(err))
                log.warning("Kafka error on %s (retrying): %s", topic, err.str())
                time.sleep(0.1)
    finally:
        cons.close()
