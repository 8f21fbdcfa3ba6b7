"""Per-unit CPU costs of the mini-broker and the JSON calibration file that stores them.

Every cost is **CPU-seconds on one core of the calibrated machine, per unit** (per alert,
per alert per filter, per output, per visit), measured with nothing else running; the
exception is ``commit_wait``, wall seconds a group waits for each transaction commit. The
model turns them into time through processor sharing, so contention is not part of a
cost. Costs depend on the alert profile (``realistic`` ~120 KB alerts with history and
cutouts, ``dmtn081`` ~2 KB 2016-schema alerts), so a calibration file holds one
:class:`Costs` per profile.

File format (``sim/calibration.json`` is the default shipped with the package)::

    {
      "format": "minibroker-sim-calibration/1",
      "source": "where the numbers come from",
      "profiles": {
        "realistic": {"consume": 3e-05, "decode_source": 2e-05, ...},
        "dmtn081": {...}
      },
      "notes": {"realistic.decode_history": "measured ... on host ...", ...}
    }

Unknown keys in a profile are an error (a typo must not silently fall back to a default);
missing keys take the :class:`Costs` defaults.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_CALIBRATION",
    "FORMAT",
    "READS",
    "Calibration",
    "Costs",
    "apply_overrides",
    "parse_overrides",
]

FORMAT = "minibroker-sim-calibration/1"
DEFAULT_CALIBRATION = Path(__file__).with_name("calibration.json")

# What the filters of a group read, hence how much of each alert is decoded.
READS = ("diaSource", "history", "full")


@dataclass(frozen=True)
class Costs:
    """CPU-seconds per unit for one alert profile (see the module docstring).

    Defaults are order-of-magnitude values for ~120 KB alerts on a 2020s x86 core; the
    shipped calibration file overrides them.
    """

    consume: float = 3e-05
    """Per alert a consumer receives: librdkafka poll and copy of the value into Python."""
    consume_tail: float = 0.0
    """Per alert a filter group receives while it reads the alerts as they arrive (see
    ``broker_out_tail``): more fetch responses and wake-ups per alert. 0: as ``consume``."""
    decode_source: float = 2e-05
    """Per alert, decoding only up to ``diaSource`` (filters that read no history)."""
    decode_history: float = 5.5e-04
    """Per alert, decoding up to ``prvDiaSources`` (filters that read the history)."""
    decode_full: float = 6e-04
    """Per alert, decoding everything (history, forced sources, cutouts)."""
    per_filter: float = 1e-06
    """Per alert per filter: a filter's share of evaluating a decoded alert (as a group
    runs them: vectorised filters once per batch, the others alert by alert)."""
    group_overhead: float = 0.0
    """Per alert a filter group handles, beyond decoding and filters: its outcome,
    visit and cap bookkeeping (``broker.core.GroupCore``)."""
    produce: float = 5e-05
    """Per output alert a filter group writes to a filter topic (produce + its share of
    transaction/flush work)."""
    per_visit: float = 0.0
    """Per visit per filter group: any extra work at a visit's end (the mini-broker has
    none beyond its commits)."""
    commit: float = 2e-04
    """Per Kafka transaction commit of a filter group: the client's CPU."""
    commit_wait: float = 0.01
    """Per transaction commit: wall seconds the group is blocked waiting for the broker
    (not CPU; the one cost that is a latency)."""
    producer_send: float = 1e-04
    """Per alert published by the producer process: librdkafka send (and, in files
    without ``producer_prepare``, the serialisation too)."""
    producer_prepare: float = 0.0
    """Per alert, serialising a visit before it is due (``broker.producer`` builds visit
    ``v + 1`` as soon as visit ``v`` is acknowledged, never in the send loop)."""
    broker_in: float = 1e-04
    """Kafka broker CPU per message appended (input alerts and filtered outputs)."""
    broker_out: float = 2e-05
    """Kafka broker CPU per message served to one consumer (each group, each user)
    reading a backlog."""
    broker_out_tail: float = 0.0
    """Kafka broker CPU per message served to a group that reads the alerts as they
    arrive (caught up with a sending producer): each fetch then returns only the latest
    batch or two, so the broker handles many more fetch requests per alert. 0: as
    ``broker_out``."""
    broker_commit: float = 0.0
    """Kafka broker CPU per transaction commit of a filter group (transaction log, the
    input offsets, the state record's marker)."""
    broker_marker: float = 0.0
    """Kafka broker CPU per output partition a transaction wrote to (its commit
    marker), on top of ``broker_commit``."""
    user_receive: float = 1e-04
    """Per alert an end consumer receives and decodes."""
    dispatch_parent: float = 1e-04
    """2018 design, per alert per filter in the parent: pickle + hand to the pool."""
    dispatch_worker: float = 6e-05
    """2018 design, per alert per filter in a pool worker: receive + unpickle + reply."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"cost {f.name} must be a number, got {value!r}")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"cost {f.name} must be a finite number >= 0, got {value}")

    def decode(self, reads: str) -> float:
        """Decode cost per alert for filters reading ``reads`` (one of :data:`READS`)."""
        if reads == "diaSource":
            return self.decode_source
        if reads == "history":
            return self.decode_history
        if reads == "full":
            return self.decode_full
        raise ValueError(f"reads must be one of {', '.join(READS)}, got {reads!r}")

    def to_dict(self) -> dict[str, float]:
        """Field name -> seconds."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Costs:
        """Build from a mapping; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown cost(s) {', '.join(unknown)}; known costs: {', '.join(sorted(known))}"
            )
        return cls(**{k: float(v) for k, v in data.items()})

    @classmethod
    def names(cls) -> list[str]:
        """The cost field names, in declaration order."""
        return [f.name for f in fields(cls)]


@dataclass
class Calibration:
    """Costs per alert profile, with where they come from; a JSON file on disk."""

    profiles: dict[str, Costs] = field(default_factory=dict)
    source: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def costs(self, profile: str) -> Costs:
        """The costs for ``profile``; ValueError naming the available ones otherwise."""
        try:
            return self.profiles[profile]
        except KeyError:
            have = ", ".join(sorted(self.profiles)) or "none"
            raise ValueError(
                f"calibration has no profile {profile!r} (it has: {have}); "
                "run `minibroker sim calibrate --profile "
                f"{profile}` or pass a calibration file that has it"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see the module docstring)."""
        return {
            "format": FORMAT,
            "source": self.source,
            "units": "CPU-seconds on one core per unit; see sim/costs.py for each field",
            "profiles": {name: c.to_dict() for name, c in sorted(self.profiles.items())},
            "notes": dict(sorted(self.notes.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Parse a JSON document; ValueError on a wrong format or bad cost."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"not a calibration file: format is {got!r}, expected {FORMAT!r}")
        profiles = {}
        for name, values in (data.get("profiles") or {}).items():
            try:
                profiles[name] = Costs.from_dict(values)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"profile {name!r}: {exc}") from None
        return cls(profiles, str(data.get("source", "")), dict(data.get("notes") or {}))

    def save(self, path: str | Path) -> None:
        """Write the calibration as indented JSON (atomically: temp file then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Calibration:
        """Read a calibration file (default: the one shipped in ``sim/``)."""
        path = Path(path) if path is not None else DEFAULT_CALIBRATION
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read calibration file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"calibration file {path} is not JSON: {exc}") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"calibration file {path}: {exc}") from None


def parse_overrides(text: str) -> list[tuple[str, float]]:
    """Parse ``"decode_history=0.0006,per_filter=1e-6"`` into (name, seconds) pairs.

    Names are checked against :class:`Costs`; values must be numbers >= 0.
    """
    pairs = []
    known = Costs.names()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"cost {item!r} must look like NAME=SECONDS, e.g. decode_full=6e-4")
        if name not in known:
            raise ValueError(f"unknown cost {name!r}; known costs: {', '.join(known)}")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"cost {name}={value!r} is not a number of seconds") from None
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"cost {name} must be a finite number >= 0, got {value}")
        pairs.append((name, seconds))
    return pairs


def apply_overrides(costs: Costs, overrides: list[tuple[str, float]]) -> Costs:
    """Return ``costs`` with hand-entered values replacing calibrated ones."""
    return replace(costs, **dict(overrides)) if overrides else costs
