"""What the command-line tests share: running ``syncgate`` as a subprocess in a clean
environment, and reading its output with deadlines."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


COMMAND_TIMEOUT_S = 60.0


STARTUP_TIMEOUT_S = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SYNCGATE_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCGATE_")}
    env.update(extra)
    return env


def syncgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


class Lines:
    """A subprocess's stdout, read line by line on a thread, so a test can wait for a
    line with a deadline instead of blocking on ``readline``."""

    def __init__(self, stream: object) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} in time; got {seen}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended without {pattern!r}; got {seen}")
            seen.append(line)
            if match := re.search(pattern, line):
                return match


@contextlib.contextmanager
def simulator(
    vendor: str, port: int, key: str, *more: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``syncgate simulate``; yields the URL it printed, once it printed it."""
    args = ["simulate", vendor, "--port", str(port), "--api-key", key, *more]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        match = Lines(proc.stdout).wait_for(r"serving at (http://\S+)", STARTUP_TIMEOUT_S)
        yield match.group(1), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
