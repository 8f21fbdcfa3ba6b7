"""Alerts of any shipped schema version, for tests that cover every version."""

from __future__ import annotations

from pathlib import Path

from broker import alerts as A
from broker.generator import AlertGenerator


def alerts_of_version(version: str, copies: int, seed: int) -> tuple[A.AlertSchema,
                                                                     list[bytes]]:
    """The schema of ``version`` and alerts in it: lsst-alert-packet's own sample
    (``copies`` times) where it ships one, else ``copies`` generated alerts."""
    from lsst.alert.packet import get_schema_root

    schema = A.load_schema(version)
    major, minor = version.split(".")
    sample = Path(get_schema_root()) / major / minor / "sample_data" / "fakeAlert.avro"
    if sample.exists():
        return schema, list(A.iter_alert_file(sample)) * copies
    return schema, AlertGenerator("realistic", seed=seed, schema=schema).visit(7, copies)
