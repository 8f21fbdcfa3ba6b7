"""What a filter group's evaluation costs per consumed batch, against its size.

``broker.core.GroupCore.evaluate`` reads the diaSource columns of a whole batch with
numpy (``broker.columnar``): one pass per field, whatever the batch holds. This times it
on generated alerts for batch sizes from 1 to 1,000, through one catalogue filter and
through every filter that reads only cheap fields, on this thread's CPU clock (best of
``--repeats``), and prints a Markdown table: CPU per call and per alert. The capacity
model charges a group per alert only; the table shows what that leaves out when a group
reads small batches (caught up with a producer that is still sending).

    python scripts/measure_batch_cost.py --profile realistic
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime

from broker.catalogue import default_filters
from broker.core import GroupCore
from broker.generator import generate_visit
from sim.calibrate_kafka import machine_summary

SIZES = (1, 8, 16, 50, 200, 1000)


def per_call(core: GroupCore, data: list[bytes], size: int, repeats: int) -> float:
    """Best CPU seconds of one ``evaluate`` call on ``size`` alerts."""
    calls = max(1, 2000 // size)
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for i in range(calls):
            at = (i * size) % (len(data) - size + 1)
            core.evaluate(data[at:at + size])
        best = min(best, (time.thread_time() - start) / calls)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="realistic", choices=("realistic", "dmtn081"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    data = generate_visit(1, 2000, args.profile, seed=1)
    cheap = [f for f in default_filters() if not f.expensive_fields]
    cores = {"1 filter": GroupCore(cheap[:1], cap=1 << 30),
             f"{len(cheap)} cheap filters": GroupCore(cheap, cap=1 << 30)}
    command = (f"python scripts/measure_batch_cost.py --profile {args.profile} "
               f"--repeats {args.repeats}")
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine_summary()}, Python "
          f"{platform.python_version()}, {args.profile} alerts, best of {args.repeats}: "
          f"`{command}`\n")
    print("| batch | " + " | ".join(f"{k}: us per call | {k}: us per alert" for k in cores)
          + " |")
    print("| --- |" + " --- | --- |" * len(cores))
    for size in SIZES:
        cells = []
        for core in cores.values():
            t = per_call(core, data, size, args.repeats)
            cells += [f"{t * 1e6:,.0f}", f"{t / size * 1e6:,.1f}"]
        print(f"| {size:,} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
