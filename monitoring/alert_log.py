"""A tiny Alertmanager webhook receiver that appends every notification to a JSON-lines file.

Alertmanager POSTs a JSON payload (version 4: ``status``, ``groupLabels``, ``alerts`` with
``labels``, ``annotations``, ``startsAt``, ``endsAt``...) for each notification; each one
becomes one line of the log, with ``receivedAt`` (Unix time) added. The demo and the
end-to-end tests read it back with :func:`read_alert_log` / :func:`alert_events`.

Run alone (e.g. next to a compose deployment)::

    python -m monitoring.alert_log --port 9095 --file alerts.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PORT", "AlertLog", "alert_events", "main", "read_alert_log"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9095
MAX_BODY = 10 * 1024 * 1024  # a notification is a few KB; refuse anything absurd


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self.send_error(400, "expected a JSON body")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_error(400, "body is not JSON")
            return
        if not isinstance(payload, dict):
            self.send_error(400, "expected a JSON object")
            return
        payload["receivedAt"] = time.time()
        self.server.append(payload)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        # A health check for people and scripts: GET / answers 200 with the line count.
        body = json.dumps({"notifications": self.server.count}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], path: Path) -> None:
        super().__init__(address, _Handler)
        self.path = path
        self.count = 0
        self._lock = threading.Lock()

    def append(self, payload: dict[str, Any]) -> None:
        line = json.dumps(payload, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            self.count += 1


class AlertLog:
    """The webhook receiver, served from a background thread.

    ``AlertLog(path).start()`` listens on ``host:port`` (port 0 picks a free one; read it
    back from :attr:`port` or :attr:`url`). Use as a context manager or call :meth:`stop`.
    """

    def __init__(self, path: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = Path(path)
        self.host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the chosen one once started)."""
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        """The URL to give Alertmanager's webhook_configs."""
        return f"http://{self.host}:{self.port}/alerts"

    def start(self) -> AlertLog:
        """Start listening; returns self."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._server = _Server((self.host, self._port), self.path)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="alert-log", daemon=True
        )
        self._thread.start()
        log.info("alert log listening on %s, writing %s", self.url, self.path)
        return self

    def stop(self) -> None:
        """Stop listening (the file stays)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def read(self) -> list[dict[str, Any]]:
        """Every notification received so far, oldest first."""
        return read_alert_log(self.path)

    def __enter__(self) -> AlertLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_alert_log(path: str | Path) -> list[dict[str, Any]]:
    """The notifications in a log file, oldest first ([] if the file does not exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    # A line being appended right now may be incomplete: skip what does not parse.
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def alert_events(path: str | Path) -> list[dict[str, Any]]:
    """One flat record per alert per notification, oldest first.

    Each record has ``alertname``, ``status`` ("firing"/"resolved"), ``labels``,
    ``annotations``, ``startsAt``, ``endsAt`` and ``receivedAt``.
    """
    events = []
    for payload in read_alert_log(path):
        for alert in payload.get("alerts", []):
            labels = alert.get("labels", {})
            events.append({
                "alertname": labels.get("alertname", ""),
                "status": alert.get("status", payload.get("status", "")),
                "labels": labels,
                "annotations": alert.get("annotations", {}),
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
                "receivedAt": payload.get("receivedAt"),
            })
    return events


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the webhook receiver until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.alert_log",
        description="Append Alertmanager webhook notifications to a JSON-lines file.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default: {DEFAULT_PORT})")
    parser.add_argument("--file", default="alerts.jsonl", help="the log file to append to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    receiver = AlertLog(args.file, args.host, args.port)
    try:
        receiver.start()
    except OSError as exc:
        print(f"alert_log: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
