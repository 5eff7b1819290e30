#!/usr/bin/env python3
"""A flood of half-open connections against ``cloudapi-gateway serve`` with few descriptors.

The gateway runs as a child process whose soft and hard descriptor limits are both
``--fd-limit`` (256); an attacking process keeps ``--connections`` (1024) connections that
each sent half a request line and then nothing, opening a new one whenever the gateway closes
one, for ``--seconds`` (30). Meanwhile ``GET /--ping`` is sent on a fresh connection every
0.1 s (10 s timeout each) and one ExportImage (1 MiB, to an on-disk fake Manta) runs half-way;
after the flood, pings and one export again. Reports, per run and as medians over ``--reps``:
pings answered, ping latency (median, p99, max), export status and time, and the attacker's
counts. The same scenario is ``tests/gateway/test_flood.py::test_flood_of_half_open_connections``.

    python3 bench/flood.py                  # one run, the test's numbers
    python3 bench/flood.py --reps 3         # medians over three runs
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from tests.support.flood import (
    FloodReport,
    GatewayProcess,
    flood_setup,
    raise_own_fd_limit,
    run_flood,
)


async def one_run(args: argparse.Namespace, workdir: Path) -> FloodReport:
    async with flood_setup(workdir) as setup:
        gateway = GatewayProcess(setup, workdir / "gateway.log", fd_limit=args.fd_limit)
        await gateway.start()
        try:
            return await run_flood(
                gateway, setup, connections=args.connections, seconds=args.seconds
            )
        finally:
            await gateway.stop()


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fd-limit", type=int, default=256)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    raise_own_fd_limit()
    reports: list[FloodReport] = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
            report = await one_run(args, Path(tmp))
        reports.append(report)
        print(f"run {rep + 1}/{args.reps}:")
        for line in report.lines():
            print("  " + line)
    during = [r.during for r in reports]
    print(
        f"medians over {len(reports)} run(s), descriptor limit {args.fd_limit}, "
        f"{args.connections} flood connections for {args.seconds:g} s:\n"
        f"  pings answered during the flood: "
        f"{100 * _median([p.answered_ratio for p in during]):.1f}%\n"
        f"  ping latency during the flood: median "
        f"{1000 * _median([_median(p.latencies) for p in during]):.1f} ms, p99 "
        f"{1000 * _median([p.latency(0.99) for p in during if p.latencies]):.1f} ms\n"
        f"  ping latency after: median "
        f"{1000 * _median([_median(r.after.latencies) for r in reports]):.1f} ms\n"
        f"  export during the flood: {_median([r.export_during[1] for r in reports]):.2f} s "
        f"(statuses {sorted({r.export_during[0] for r in reports})}); after: "
        f"{_median([r.export_after[1] for r in reports]):.2f} s"
    )
    ok = all(
        r.during.answered_ratio >= 0.99 and r.export_during[0] == 200 and r.export_after[0] == 200
        for r in reports
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
