"""Starting and stopping the processes a benchmark runs against: the vendor simulators
(``syncgate simulate``), the gateway (``syncgate serve``) and the baseline app, each a real
subprocess on loopback; and reading their CPU time and resident memory from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.serving import spare_port

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port (``spare_port``: never one an outgoing connection can take),
    never one this process handed out before (a process may not have bound it yet)."""
    while True:
        port = spare_port()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of ``pid`` in MB, from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def involuntary_switches(pid: int) -> int:
    """How many times the kernel took the CPU from ``pid`` (all its threads) while it
    could still run (``nonvoluntary_ctxt_switches`` in /proc/<pid>/task/*/status)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used by ``pid`` (from /proc/<pid>/stat)."""
    return sum(cpu_split_s(pid))


def cpu_split_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds used by ``pid`` (from /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


# -- CPU pinning -----------------------------------------------------------------------
# The load generator (this process) and the simulators run on one core, the system under
# test on another, so that their CPU does not steal from each other's. ``None`` until
# ``pin_harness`` decides (fewer than two CPUs: no pinning, with a printed note).
PINNING: dict[str, set[int] | None] = {"load": None, "sut": None}


def pin_harness(enabled: bool = True) -> str:
    """Pin this process (load generator, harness) to the first allowed CPU and reserve
    the second for the system under test. Returns a one-line note of what was done."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    if not enabled:
        return "CPU pinning off (--no-pin): every process may run on every CPU"
    if len(allowed) < 2:
        return f"CPU pinning skipped: only {len(allowed)} CPU available to this process"
    load, sut = {allowed[0]}, {allowed[1]}
    PINNING["load"], PINNING["sut"] = load, sut
    os.sched_setaffinity(0, load)
    return (
        f"CPU pinning: load generator, harness and simulators on CPU {allowed[0]}, "
        f"system under test on CPU {allowed[1]}"
    )


def pinned_argv(argv: list[str], cpus: set[int] | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c`` (exec, so the pid stays the program's and
    every thread it starts inherits the mask from the first instruction)."""
    if not cpus:
        return argv
    if shutil.which("taskset"):
        return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *argv]
    return argv


_LIVE: set[Proc] = set()


def stop_all() -> None:
    """Stop every process this harness started and has not stopped yet."""
    for proc in list(_LIVE):
        proc.stop(5)


class Proc:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        *,
        role: str = "load",
        cwd: Path = ROOT,
    ) -> None:
        """``role``: ``sut`` (the system under test: its own CPU) or ``load`` (simulators
        and helpers: the load generator's CPU). See ``pin_harness``. ``cwd``: the tree
        whose code runs (``python -m`` imports from it; bench/ab.py runs another's)."""
        self.name = name
        self.log = log_dir / f"{name}.log"
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        cpus = PINNING.get(role)
        self.popen = subprocess.Popen(
            pinned_argv(argv, cpus),
            cwd=cwd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if cpus and not shutil.which("taskset"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.popen.pid, cpus)
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        _LIVE.discard(self)
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)  # a paused process would not see SIGTERM
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        if not self._log_file.closed:
            self._log_file.close()

    def pause(self) -> None:
        """SIGSTOP: the process keeps everything it holds and runs nothing."""
        self.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.popen.send_signal(signal.SIGCONT)

    def kill9(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


async def wait_http(url: str, proc: Proc, deadline_s: float = 30.0) -> None:
    """Wait until ``url`` answers (any status), or fail with the process's log tail."""
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < end:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer at {url} within {deadline_s}s:\n{proc.tail()}")


def base_env(root: Path = ROOT) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
