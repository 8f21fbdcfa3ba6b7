"""The one place that talks to Kafka: client settings, topics, and the group state topic.

Every service builds its clients here so that delivery guarantees are set once:
producers are idempotent with acks=all; filter groups read ``read_committed`` and write
transactionally; nothing auto-creates topics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "STATE_TOPIC",
    "admin",
    "consumer",
    "deadletter_topic",
    "discard_topics",
    "ensure_topics",
    "producer",
    "read_state",
    "state_record",
    "topic_exists",
    "wait_for_broker",
]

log = logging.getLogger(__name__)

STATE_TOPIC = "minibroker-state"
# Realistic alerts are ~125 KB: fetch many per request, and queue up to a few hundred MB
# (~2,000 alerts). When that queue is full, librdkafka postpones the next fetch by
# fetch.queue.backoff.ms, 1 s by default: a group that drains 2,000 alerts in 0.2 s then
# idles 0.8 s, which capped every group at ~2,800 alerts/s on a backlog whatever its CPU
# cost (measured: 3,000-4,000/s with the default, 10,000-12,000/s with 10 ms, for a
# consumer doing 60 us of work per alert). Refill within 10 ms instead.
_FETCH = {
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 16_777_216,
    "fetch.wait.max.ms": 100,
    "queued.max.messages.kbytes": 262_144,
    "fetch.queue.backoff.ms": 10,
}


def deadletter_topic(topic: str) -> str:
    """Where malformed messages read from ``topic`` are set aside, unchanged."""
    return f"{topic}-deadletter"


def admin(bootstrap: str) -> AdminClient:
    """An admin client for ``bootstrap``."""
    return AdminClient({"bootstrap.servers": bootstrap})


def wait_for_broker(bootstrap: str, timeout: float | None = None) -> None:
    """Raise a clear error unless a broker answers at ``bootstrap`` within ``timeout``.

    The default is ``MINIBROKER_CONNECT_TIMEOUT`` seconds, or 30.
    """
    if timeout is None:
        timeout = float(os.environ.get("MINIBROKER_CONNECT_TIMEOUT", "30"))
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    client = admin(bootstrap)
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.2)
    raise ConnectionError(
        f"no Kafka broker answered at {bootstrap} within {timeout:.0f} s "
        f"({last or 'no brokers in metadata'}); start one with `minibroker kafka start` "
        "or check the address"
    )


def topic_exists(bootstrap: str, topic: str, timeout: float = 10.0) -> bool:
    """True if ``topic`` exists on the broker."""
    md = admin(bootstrap).list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    return t is not None and t.error is None


def discard_topics(bootstrap: str, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Delete scratch topics (a measurement's), best effort: a topic that cannot be
    deleted is left behind, never an error."""
    names = list(dict.fromkeys(topics))
    if not names:
        return
    # Keep the client referenced until every future is done: a client collected
    # earlier fails them all with _DESTROY and deletes nothing.
    client = admin(bootstrap)
    with contextlib.suppress(Exception):
        futures = client.delete_topics(names, operation_timeout=timeout)
        for fut in futures.values():
            with contextlib.suppress(Exception):
                fut.result()


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1,
                  config: dict[str, str] | None = None, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    client = admin(bootstrap)
    existing = set(client.list_topics(timeout=timeout).topics)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return []
    futures = client.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1, config=config or {})
         for t in wanted],
        operation_timeout=timeout,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # Metadata propagates asynchronously; wait until every topic is visible.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = client.list_topics(timeout=timeout).topics
        if all(t in topics and topics[t].error is None for t in wanted):
            break
        time.sleep(0.1)
    return created


def producer(bootstrap: str, transactional_id: str | None = None,
             **overrides: Any) -> Producer:
    """An idempotent acks=all producer; transactional when ``transactional_id`` is given."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "queue.buffering.max.kbytes": 2_097_151,
        "queue.buffering.max.messages": 1_000_000,
        "message.max.bytes": 1_000_000,
    }
    if transactional_id:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = 60_000
    conf.update(overrides)
    return Producer(conf)


def consumer(bootstrap: str, group_id: str, *, transactional_input: bool = True,
             auto_commit: bool = False, eof: bool = True, **overrides: Any) -> Consumer:
    """A consumer reading committed data from the earliest offset of a new group."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": auto_commit,
        "enable.partition.eof": eof,
        "isolation.level": "read_committed" if transactional_input else "read_uncommitted",
        "session.timeout.ms": 45_000,
        **_FETCH,
    }
    conf.update(overrides)
    return Consumer(conf)


def state_record(group: str, state: dict[str, Any]) -> tuple[bytes, bytes]:
    """Key and value of a group's state record in :data:`STATE_TOPIC`."""
    return group.encode(), json.dumps(state, separators=(",", ":")).encode()


def read_state(bootstrap: str, group: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """The last committed state record of ``group``, or None if it has none."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{group}-state-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    try:
        from confluent_kafka import TopicPartition

        low, high = c.get_watermark_offsets(TopicPartition(STATE_TOPIC, 0), timeout=timeout)
        if high <= low:
            return None
        c.assign([TopicPartition(STATE_TOPIC, 0, OFFSET_BEGINNING)])
        key = group.encode()
        found: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = c.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return found
                raise KafkaException(err)
            value = msg.value()
            if msg.key() == key and value is not None:
                found = json.loads(value)
        raise TimeoutError(f"reading {STATE_TOPIC} for {group} took over {timeout:.0f} s")
    finally:
        c.close()
