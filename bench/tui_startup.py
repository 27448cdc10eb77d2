"""Time from starting `budgettui` to the first frame that shows a recommendation.

Runs the installed console script in a pseudo-terminal (120x40) with `$BUDGETTUI_READY_FILE`
set: the app writes the wall-clock time once the first recommendation has been painted, then
exits. Each run gets a fresh, empty `$BUDGETTUI_HOME` (so the advisor fits on the shipped runs
only). Also times `import tui.app` alone, alternated with the full start, to show where the time
goes. Usage: `python bench/tui_startup.py [--runs N]`; prints a Markdown table."""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

BUDGETTUI = Path(sys.executable).with_name("budgettui")
COLUMNS, ROWS = 120, 40


def _drain(master: int, process: subprocess.Popen, timeout: float) -> None:
    """Read the app's output (a terminal that is never read fills up and blocks the app)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("budgettui did not show a recommendation in time")
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                os.read(master, 1 << 16)
            except OSError:
                break
    process.wait()


def time_to_recommendation(timeout: float = 60.0) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        env = {**os.environ, "BUDGETTUI_HOME": str(Path(tmp) / "home"), "BUDGETTUI_READY_FILE": str(ready),
               "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        started = time.time()
        process = subprocess.Popen([str(BUDGETTUI)], stdin=slave, stdout=slave, stderr=slave, env=env,
                                   start_new_session=True)
        os.close(slave)
        try:
            _drain(master, process, timeout)
        finally:
            os.close(master)
        if not ready.exists():
            raise RuntimeError(f"budgettui exited with {process.returncode} before showing a recommendation")
        return float(ready.read_text()) - started


def time_import() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tui.app"], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    starts, imports = [], []
    time_to_recommendation()  # warm the file cache and .pyc files once, as a second start would find them
    for _ in range(args.runs):
        starts.append(time_to_recommendation())
        imports.append(time_import())
    print(f"| measure ({args.runs} runs, alternated) | median s | min s | max s |")
    print("| --- | --- | --- | --- |")
    for name, values in (("start → first frame with a recommendation", starts),
                         ("`python -c 'import tui.app'` (process start to exit)", imports)):
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
