"""Time from starting `budgettui` to the first frame that shows a recommendation.

Starts the app in a pseudo-terminal (120x40) as the console script does, inside this script's
probe (`--probe FILE`): the probe subclasses the app only to listen for the first `AdviceReady`
message, writes the wall-clock time once the frame after it has been painted, then exits — the
screens themselves know nothing of the benchmark. Each run gets a fresh, empty `$BUDGETTUI_HOME`
(so the advisor fits on the shipped runs only). Also times `import tui.app` alone, alternated
with the full start, to show where the time goes. Usage: `python bench/tui_startup.py [--runs N]`;
prints a Markdown table."""

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

COLUMNS, ROWS = 120, 40
ROOT = Path(__file__).resolve().parents[1]


def probe(ready_file: str) -> int:
    """The app as `budgettui` starts it, timed to the first painted recommendation."""
    sys.path.insert(0, str(ROOT))
    from textual import on

    from tui.app import BudgetApp, parse_args
    from tui.messages import AdviceReady

    class TimedApp(BudgetApp):
        @on(AdviceReady)
        def _first_recommendation(self, message: AdviceReady) -> None:
            self.call_after_refresh(self._painted)  # the plan screen has drawn it; wait for the paint

        def _painted(self) -> None:
            Path(ready_file).write_text(f"{time.time():.6f}\n", encoding="utf-8")
            self.exit()

    inputs, _ = parse_args([])
    TimedApp(inputs).run()
    return 0


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
        env = {**os.environ, "BUDGETTUI_HOME": str(Path(tmp) / "home"), "TERM": "xterm-256color",
               "OMP_NUM_THREADS": "1"}
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        started = time.time()
        process = subprocess.Popen([sys.executable, __file__, "--probe", str(ready)], stdin=slave, stdout=slave, stderr=slave, env=env,
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
    parser.add_argument("--probe", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe)
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
