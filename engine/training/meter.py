"""Wall time and peak memory of one stage of a run (or of its calibration).

Peak memory is what the stage can run out of: on CUDA the most GPU memory torch allocated
(`torch.cuda.max_memory_allocated`, reset at the stage's start — this code path has not been
exercised on a GPU here); on the CPU the process's resident set at its highest. Linux keeps that
high-water mark in /proc/self/status (VmHWM) and resets it when "5" is written to
/proc/self/clear_refs, so each stage gets its own peak; where that cannot be reset the peak is
the process's lifetime peak (`resource.getrusage`), which can only over-state a later stage.
Before a CPU stage starts, the heap pages earlier stages freed are returned to the system."""

from __future__ import annotations

import os
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATUS, CLEAR_REFS, STAT = Path("/proc/self/status"), Path("/proc/self/clear_refs"), Path("/proc/stat")


def _status_bytes(key: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """The process's resident set now."""
    now = _status_bytes("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_memory_bytes() -> int:
    """Memory held now, as `measure` counts it: GPU memory allocated on CUDA, else the resident set."""
    import torch

    return int(torch.cuda.memory_allocated()) if torch.cuda.is_available() else rss_bytes()


def release_freed_memory() -> None:
    """Hands the heap pages a finished stage freed back to the system (glibc keeps them
    otherwise), so the next stage's resident set is what it holds, not what the last one left
    behind — the same in a run and in its calibration. A no-op without glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_cpu_peak() -> None:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        pass


def _cpu_peak() -> int:
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device() -> str:
    """"cuda" when torch sees a GPU (where runs train), else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def threads() -> int:
    """Torch's CPU threads for this process (the run's --threads once set)."""
    import torch

    return torch.get_num_threads()


def _busy_seconds() -> float | None:
    """CPU seconds the cores this process may run on have been busy since boot, from /proc/stat
    (user, nice, system, irq, softirq and steal: a virtual machine's host taking its cores counts);
    work on cores outside its affinity competes with nothing of ours and is left out. None where
    there is no /proc/stat."""
    mine = {f"cpu{core}" for core in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else set()
    try:
        rows = {row[0]: [int(n) for n in row[1:9]]
                for row in (line.split() for line in STAT.read_text().splitlines() if line.startswith("cpu"))}
        ticks = [rows[name] for name in mine if name in rows] or [rows["cpu"]]  # "cpu": every core's sum
    except (OSError, ValueError, KeyError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (sum(column) for column in zip(*ticks))
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class OtherWork:
    cores: float | None = None  # None where the machine's busy time cannot be read


@contextmanager
def other_work():
    """How many cores, on average over the block, went to anything but this process (other
    processes, the host of a virtual machine): a calibration timed while they competed for the
    cores forecasts long."""
    result, wall, busy, own = OtherWork(), time.perf_counter(), _busy_seconds(), _own_seconds()
    try:
        yield result
    finally:
        now = _busy_seconds()
        if busy is not None and now is not None:
            elapsed = max(time.perf_counter() - wall, 1e-9)
            result.cores = max(0.0, (now - busy) - (_own_seconds() - own)) / elapsed


@dataclass
class Measured:
    seconds: float = 0.0
    peak_memory_bytes: int = 0


@contextmanager
def measure():
    """Times the block and records its peak memory into the yielded `Measured`."""
    restart_peak()
    result = Measured()
    start = time.perf_counter()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        result.peak_memory_bytes = peak_memory_bytes()


def restart_peak() -> None:
    """From now on, `peak_memory_bytes` counts only what is held from here: freed memory is handed
    back (the CUDA cache emptied, the heap trimmed) and the peak reset."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:
        release_freed_memory()
        _reset_cpu_peak()


def peak_memory_bytes() -> int:
    """The peak since the current `measure` began (GPU memory allocated on CUDA, else the RSS)."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else _cpu_peak()


def available_memory_bytes() -> int | None:
    """Memory a run may use here: free GPU memory on CUDA, else MemAvailable plus what this process
    already holds (its own pages count towards the forecast peak)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0] + torch.cuda.memory_allocated())
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 + rss_bytes()
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
    return pages * os.sysconf("SC_PAGE_SIZE") if pages else None
