"""A local Apache Kafka 4.x broker in KRaft mode (one combined broker + controller).

The jars come from Maven Central: Maven resolves ``broker/data/kafka/pom.xml`` into a
cache outside git (``~/.cache/minibroker`` or ``MINIBROKER_CACHE``) once; the broker then
runs as ``java -cp <jars> kafka.Kafka server.properties``. No Docker needed. On machines
without Java or Maven, ``compose/`` runs the official apache/kafka image instead.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from broker.options import UsageError, option, positive_int

__all__ = [
    "KAFKA_VERSION",
    "KafkaNotAvailable",
    "LocalKafka",
    "add_parser_args",
    "ensure_jars",
    "free_port",
    "main",
    "port_open",
]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"


class KafkaNotAvailable(RuntimeError):
    """Java, Maven or the jars are missing; the message says what to install."""


def cache_dir() -> Path:
    """Where resolved jars live (outside git)."""
    root = os.environ.get("MINIBROKER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minibroker"
    )
    return Path(root)


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    text = out.stderr + out.stdout
    for token in text.split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            if head == "1":  # 1.8 style
                return int(token.split(".")[1])
            return int(head.split("-")[0].split("+")[0])
    return 0


def ensure_jars() -> Path:
    """Return the directory of Kafka's jars, resolving them with Maven on first use."""
    java = shutil.which("java")
    if java is None:
        raise KafkaNotAvailable(
            "java not found: install a Java 17+ runtime (Debian: apt-get install "
            "openjdk-17-jre-headless), or run Kafka with docker compose (see compose/)"
        )
    major = _java_major(java)
    if major and major < 17:
        raise KafkaNotAvailable(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer, found Java {major}: install "
            "openjdk-17-jre-headless, or use docker compose (see compose/)"
        )
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaNotAvailable(
            "mvn not found: install Maven (Debian: apt-get install maven) so the Kafka jars "
            "can be resolved from Maven Central, or use docker compose (see compose/)"
        )
    pom = resources.files("broker") / "data" / "kafka" / "pom.xml"
    libs.mkdir(parents=True, exist_ok=True)
    log.info("resolving Apache Kafka %s jars with Maven into %s (once)", KAFKA_VERSION, libs)
    with resources.as_file(pom) as pom_path:
        cmd = [
            mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise KafkaNotAvailable(
            "Maven could not resolve the Kafka jars (is Maven Central reachable?): "
            + " | ".join(tail)
        )
    marker.write_text(KAFKA_VERSION)
    return libs


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}/log
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
# A full-scale visit is ~1.2 GB of realistic alerts: keep an hour, in 256 MB segments.
log.retention.ms={retention_ms}
log.segment.bytes=268435456
log.retention.check.interval.ms=60000
num.network.threads=3
num.io.threads=4
"""

LOG4J2_PROPERTIES = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {data_dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


@dataclass
class LocalKafka:
    """One local KRaft broker: ``start()`` formats storage if needed, launches and waits."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 0
    host: str = "127.0.0.1"
    heap: str = "1g"
    retention_ms: int = 3_600_000
    log_level: str = "info"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        if not self.controller_port:
            self.controller_port = self.port + 1 if self.port else free_port()

    @property
    def bootstrap(self) -> str:
        """The bootstrap.servers string for clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(SERVER_PROPERTIES.format(
            host=self.host, port=self.port, controller_port=self.controller_port,
            data_dir=self.data_dir, retention_ms=self.retention_ms,
        ))
        (self.data_dir / "log4j2.properties").write_text(
            LOG4J2_PROPERTIES.format(data_dir=self.data_dir, level=self.log_level)
        )
        return props

    def _java(self, libs: Path, main_class: str, *args: str,
              heap: str | None = None) -> list[str]:
        cmd = ["java"]
        if heap:
            cmd += [f"-Xms{heap}", f"-Xmx{heap}"]
        cmd += [
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main_class, *args,
        ]
        return cmd

    def running_pid(self) -> int | None:
        """PID of a broker started from this data directory that is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def start(self, timeout: float = 90.0) -> None:
        """Format storage (first time), start the broker, and wait until it serves clients."""
        if self.running_pid() is not None:
            raise UsageError(
                f"a Kafka from {self.data_dir} is already running (pid {self.running_pid()}); "
                "stop it with `minibroker kafka stop` first"
            )
        if port_open(self.host, self.port):
            raise UsageError(
                f"port {self.port} is already in use: choose another with --port"
            )
        libs = ensure_jars()
        props = self._write_config()
        if not (self.data_dir / "log" / "meta.properties").exists():
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                # "=" form: a base64 cluster id may start with "-", which would read as a flag.
                self._java(libs, "kafka.tools.StorageTool", "format",
                           f"--cluster-id={cluster_id}", f"--config={props}"),
                capture_output=True, text=True, check=False,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed: {fmt.stderr.strip()}")
        out = open(self.data_dir / "stdout.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self.pid_file.write_text(str(self._proc.pid))
        self.wait_ready(timeout)
        log.info("Kafka %s ready at %s (data in %s)", KAFKA_VERSION, self.bootstrap,
                 self.data_dir)

    def wait_ready(self, timeout: float) -> None:
        """Block until the broker answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"Kafka exited with code {self._proc.returncode} during start-up; "
                    f"see {self.data_dir / 'server.log'}"
                )
            if port_open(self.host, self.port):
                try:
                    md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(
                        timeout=2
                    )
                    if md.brokers:
                        return
                except Exception:  # not ready yet: keep waiting until the deadline
                    pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"Kafka did not accept clients within {timeout:.0f} s; see "
            f"{self.data_dir / 'server.log'}"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``)."""
        pid = self._proc.pid if self._proc is not None else self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.2)
        else:
            log.warning("Kafka did not stop within %.0f s; killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait()
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return True


def _cluster_id() -> str:
    # Kafka wants a base64 UUID of 16 bytes (22 characters, URL-safe, no padding).
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def add_parser_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``minibroker kafka``."""
    parser.add_argument("action", choices=["start", "stop", "status", "fetch"],
                        help="start (formats storage on first use), stop, status, or fetch "
                             "(only resolve the jars with Maven)")
    option(parser, "--port", default=9092, type=positive_int, dest="kafka_port",
           help="client port")
    option(parser, "--data-dir", default=str(Path.home() / ".local/share/minibroker/kafka"),
           help="storage and logs of the broker")
    option(parser, "--foreground", flag=True,
           help="with start: keep running in the foreground until Ctrl-C")


def main(args: argparse.Namespace) -> int:
    """Start, stop or query a local Apache Kafka (KRaft) broker."""
    if args.action == "fetch":
        try:
            libs = ensure_jars()
        except KafkaNotAvailable as exc:
            raise UsageError(str(exc)) from None
        print(f"kafka: Apache Kafka {KAFKA_VERSION} jars in {libs}")
        return 0
    kafka = LocalKafka(Path(args.data_dir), port=args.kafka_port)
    if args.action == "status":
        pid = kafka.running_pid()
        if pid is None:
            print(f"kafka: not running (data dir {kafka.data_dir})")
            return 3
        print(f"kafka: running, pid {pid}, bootstrap {kafka.bootstrap}")
        return 0
    if args.action == "stop":
        if not kafka.stop():
            print("kafka: not running")
            return 0
        print("kafka: stopped")
        return 0
    try:
        kafka.start()
    except KafkaNotAvailable as exc:
        raise UsageError(str(exc)) from None
    print(f"kafka: started, pid {kafka.running_pid()}, bootstrap {kafka.bootstrap}")
    if args.foreground:
        try:
            while kafka._proc is not None and kafka._proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            kafka.stop()
    sys.stdout.flush()
    return 0
