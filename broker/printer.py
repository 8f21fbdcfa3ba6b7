"""``minibroker print BROKER TOPIC [INTERVAL]``: print every INTERVAL-th alert, decoded.

Each printed alert is one JSON object per line, without its cutouts (the FITS stamps are
replaced by their size in bytes). Malformed messages are reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Message

from broker.options import UsageError, option, positive_int

__all__ = ["add_parser_args", "main", "printable", "run"]

log = logging.getLogger(__name__)


def printable(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert without cutout bytes (each replaced by its length)."""
    return {k: (len(v) if isinstance(v, bytes) else v) if k.startswith("cutout") else v
            for k, v in alert.items()}


def run(bootstrap: str, topic: str, interval: int = 1, group_id: str | None = None,
        bare_schema: str | None = None, stop: threading.Event | None = None,
        out: Callable[[str], None] = print) -> int:
    """Print every ``interval``-th alert of ``topic`` until ``stop``; return alerts seen."""
    from broker.alerts import Decoder, MalformedAlert, resolve_schema
    from broker.endconsumer import consume_topic

    stop = stop or threading.Event()
    decoder = Decoder(None, bare_schema=resolve_schema(bare_schema) if bare_schema else None)
    seen = [0]

    def on_message(msg: Message) -> None:
        seen[0] += 1
        if (seen[0] - 1) % interval:
            return
        try:
            alert = decoder.decode(msg.value() or b"")
        except MalformedAlert as exc:
            log.warning("%s/%d/%d is not an alert: %s", msg.topic(), msg.partition(),
                        msg.offset(), exc)
            return
        out(json.dumps(printable(alert), default=str))

    consume_topic(bootstrap, topic, group_id or f"minibroker-print-{topic}", on_message,
                  lambda _m: None, stop)
    return seen[0]


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker print``."""
    parser.add_argument("broker", metavar="BROKER", help="Kafka bootstrap servers, host:port")
    parser.add_argument("topic", metavar="TOPIC", help="topic to read")
    parser.add_argument("interval", metavar="INTERVAL", nargs="?", default=1, type=positive_int,
                        help="print every INTERVAL-th alert (default: 1)")
    option(parser, "--group-id", help="consumer group (default: minibroker-print-TOPIC)")
    option(parser, "--bare-schema",
           help="read bare schemaless Avro: a schema version, or .avsc files comma-separated")


def main(args: argparse.Namespace) -> int:
    """Print every Nth alert of a topic, decoded, without cutouts."""
    from broker.endconsumer import EndConsumerError

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(args.broker, args.topic, args.interval, args.group_id, args.bare_schema, stop,
            out=lambda line: print(line, flush=True))
    except EndConsumerError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        pass
    return 0
