"""Helpers for tests on a real Kafka: read whole topics, run services as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Record:
    value: bytes
    headers: dict[str, bytes]
    offset: int


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every committed message of partition 0 of ``topic``, from the beginning."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": "read_committed"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high <= low:
            return []
        c.assign([TopicPartition(topic, 0, low)])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise RuntimeError(m.error().str())
            out.append(Record(m.value(), dict(m.headers() or []), m.offset()))
        raise TimeoutError(f"reading {topic} took over {timeout} s")
    finally:
        c.close()


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset on partition 0 of ``topic`` (-1001 if none)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()


def end_offset(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def minibroker(args: Sequence[str], **kw: object) -> subprocess.Popen[str]:
    """Start ``minibroker ARGS`` as a subprocess (stdout/stderr captured as text)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "broker", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)  # type: ignore[call-overload]


def stop(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[str, str]:
    """SIGTERM ``proc`` and return its (stdout, stderr)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
