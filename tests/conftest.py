"""Session fixtures shared by every test level.

``kafka_bootstrap`` starts one real Apache Kafka (KRaft) broker for the whole session on
free ports in a temporary directory, or uses the broker named by
``MINIBROKER_TEST_BOOTSTRAP`` when that is set (a broker already running).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(
    os.environ.get("MINIBROKER_SHARED_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The directory of real Rubin alert samples and schemas (../shared/data)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}; set MINIBROKER_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def alert_2016(shared_data: Path) -> tuple[Any, bytes]:
    """The 2018 prototype's 2016 schema and its sample alert as bare schemaless Avro."""
    import io
    import json

    import fastavro

    from broker.alerts import load_schema_file

    base = shared_data / "sample-avro-alert-2016/schema"
    schema = load_schema_file(*(base / f"{n}.avsc" for n in
                                ("diasource", "diaobject", "ssobject", "cutout", "alert")))
    record = json.loads((shared_data / "sample-avro-alert-2016/data/alert.json").read_text())
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return schema, buf.getvalue()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap.servers of a real Kafka broker for this test session."""
    existing = os.environ.get("MINIBROKER_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    from broker.local_kafka import LocalKafka, free_port

    kafka = LocalKafka(tmp_path_factory.mktemp("kafka"), port=free_port(),
                       controller_port=free_port(), heap="768m", log_level="warn")
    kafka.start()
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture
def topic_name() -> str:
    """A unique topic name, so tests never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:10]}"
