"""How long the command line takes: ``--version``, ``--help`` and ``export``, each a fresh process.

A dev server (``cloudapi-gateway dev``: the gateway and an on-disk fake Manta, with the ``dev``
account and its demo image) runs in its own process on free ports, in a temporary data dir that
is removed at the end. Then each command runs N times as a new ``python -m gateway`` process,
after one warm-up run each (so the page cache holds the modules), in turns (one of each, then the
next round) so that a busy moment hits every command alike. The table gives the median, the
fastest and the slowest wall-clock time:

- ``--version`` and ``--help``: start-up alone;
- ``export --dry-run``: start-up of the client, its flags and its key (no request);
- ``export``: the whole ``triton image export`` equivalent against the dev server (GetImage or
  ListImages, then ExportImage of the small demo image), so the server's work is in it too.

    python3 bench/cli_startup.py [--runs 11] [--command python3 -m gateway]

The goal for the three start-ups is under 0.4 s on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start_dev(command: list[str], data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``cloudapi-gateway dev`` on free ports; returns the process and the variables it printed."""
    proc = subprocess.Popen(
        [*command, "dev", "--data-dir", str(data_dir), "--port", "0", "--manta-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    env: dict[str, str] = {}
    for line in proc.stdout:  # first run makes a key and a demo image: may take a few seconds
        if line.startswith("export "):
            (assignment,) = shlex.split(line[len("export ") :])
            name, _, value = assignment.partition("=")
            env[name] = value
        if line.startswith("# Serving"):
            return proc, env
    raise SystemExit(f"cloudapi-gateway dev exited early with {proc.wait()}")


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one run; a failing run stops the benchmark with its output."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="runs of each command (default 11)")
    parser.add_argument(
        "--command",
        default=f"{sys.executable} -m gateway",
        help="how to start the command line (default: this python -m gateway)",
    )
    args = parser.parse_args(argv)
    command = shlex.split(args.command)

    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        proc, dev_env = start_dev(command, Path(tmp) / "dev-data")
        try:
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("SDC_", "TRITON_"))},
                **dev_env,
            }
            env.pop("SSH_AUTH_SOCK", None)  # the key file is given: no agent in the figure
            cases = {
                "--version": [*command, "--version"],
                "--help": [*command, "--help"],
                "export --dry-run": [*command, "export", "--dry-run", "demo", "/dev/stor/x"],
                "export": [*command, "export", "demo@1.0.0", "/dev/stor/bench"],
            }
            times: dict[str, list[float]] = {name: [] for name in cases}
            for argv_ in cases.values():
                timed(argv_, env)  # warm-up
            for _ in range(args.runs):
                for name, argv_ in cases.items():
                    times[name].append(timed(argv_, env))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)

    print(f"{'command':<20} {'median s':>9} {'min s':>7} {'max s':>7}  (n={args.runs})")
    for name, values in times.items():
        print(
            f"{name:<20} {statistics.median(values):>9.3f} {min(values):>7.3f} {max(values):>7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
