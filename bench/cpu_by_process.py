"""Where a command's CPU goes: run it, read /proc every few seconds, and print the machine's
busy share over time and the CPU-seconds used by each kind of process (real vLLM engines,
emulated pods, Dagster code servers, the daemon, `dagster job launch`, pytest workers,
Chromium, …). For the test suite on a small machine: which lane starves which.

    .venv/bin/python bench/cpu_by_process.py -- bash scripts/test.sh
    .venv/bin/python bench/cpu_by_process.py --every 2 -- pytest tests/cli/test_demo.py

Every process on the machine is counted, not only the command's (other work shows up too),
and processes that start and end between two readings are missed: a profile, not an account.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
# First match wins: a command line containing the key is that kind of process.
KINDS = (
    ("VLLM::EngineCore", "vLLM engine"),
    ("VLLM::Worker", "vLLM worker"),
    ("vllm.entrypoints", "vLLM API server"),
    ("sandbox.vllm_metrics", "emulated vLLM pod"),
    ("router serve", "router pod"),
    ("dagster-daemon", "Dagster daemon"),
    ("dagster._daemon", "Dagster daemon"),
    ("api execute_run", "Dagster run"),
    # the code server starts each run with multiprocessing's spawn: its command line is
    # `-c "from multiprocessing.spawn import spawn_main; spawn_main(…, pipe_handle=…)"`
    ("multiprocessing.spawn", "Dagster run"),
    ("api grpc", "Dagster code server"),
    ("code-server", "Dagster code server"),
    ("job launch", "dagster job launch"),
    ("asset materialize", "dagster asset materialize"),
    ("dagster_webserver", "Dagster UI"),
    ("chromium", "Chromium"),
    ("prometheus", "Prometheus"),
    ("postgres", "Postgres"),
    ("execnet", "pytest worker"),
    ("xdist", "pytest worker"),
    ("pytest", "pytest"),
    ("pip", "pip"),
    ("mypy", "mypy"),
    ("sandbox", "sandbox"),
)


def kind(command: str) -> str:
    for key, name in KINDS:
        if key in command:
            return name
    return command.split(" ")[0].rsplit("/", 1)[-1] or "kernel"


def machine() -> tuple[int, int]:
    """All and idle CPU ticks since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values), values[3] + values[4]


def processes() -> dict[str, tuple[int, str]]:
    """pid → (CPU ticks so far, kind)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[entry.name] = (int(fields[11]) + int(fields[12]), kind(command[:300]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=5.0, help="seconds between readings")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    totals: collections.Counter[str] = collections.Counter()
    busy_shares = []
    before, before_idle = machine()
    seen = processes()
    started = time.monotonic()
    running = subprocess.Popen(command)
    while running.poll() is None:
        time.sleep(args.every)
        now, idle = machine()
        current = processes()
        for pid, (ticks, name) in current.items():
            totals[name] += (ticks - seen.get(pid, (0, name))[0]) / HZ
        busy_shares.append(1 - (idle - before_idle) / max(1, now - before))
        print(f"{time.monotonic() - started:6.0f} s  busy {busy_shares[-1]:4.0%}", file=sys.stderr)
        before, before_idle, seen = now, idle, current
    wall = time.monotonic() - started
    mean = sum(busy_shares) / max(1, len(busy_shares))
    print(f"\n{' '.join(command)}: exit {running.returncode}, {wall:.0f} s, mean busy {mean:.0%}")
    for name, seconds in totals.most_common():
        if seconds >= 1:
            print(f"  {name:28} {seconds:8.0f} CPU-s")
    sys.exit(running.returncode)


if __name__ == "__main__":
    main()
