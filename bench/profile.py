"""Profiling the gateway while the harness loads it: ``python -m bench.run --profile``.

py-spy (``pip install -e '.[bench]'``) samples the gateway process (``py-spy record
--format raw --function``: collapsed stacks, one line per distinct stack) through the
sustained phase. From those stacks this module writes, into the work directory's
``profile/`` folder:

- ``gateway.collapsed``: py-spy's raw output (feed it to any flame graph tool);
- ``gateway.svg``: a flame graph (rendered here, no other tool needed);
- ``top.txt``: the functions with the most samples of their own (self) and, beside
  them, the share of samples they are on the stack at all (total); then the project's
  own functions (app/, adapters/) by total.

The harness prints the top 15 of each. ``python -m bench.profile FILE.collapsed`` summarises a
file again.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procs import PINNING, pinned_argv


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` attached to ``pid`` between ``start()`` and ``stop()``."""

    def __init__(
        self, pid: int, out_dir: Path, rate: int = 100, *, nonblocking: bool = False
    ) -> None:
        """``nonblocking``: py-spy reads the process without pausing it for each sample
        (less cost to the process, a stack now and then torn)."""
        self.pid = pid
        self.dir = out_dir
        self.rate = rate
        self.nonblocking = nonblocking
        self.proc: subprocess.Popen[bytes] | None = None
        self.note = ""

    @property
    def collapsed(self) -> Path:
        return self.dir / "gateway.collapsed"

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            self.note = "py-spy not installed (pip install -e '.[bench]'): no profile"
            print(f"[bench] {self.note}", file=sys.stderr, flush=True)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            exe,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--function",
            "--output",
            str(self.collapsed),
            *(["--nonblocking"] if self.nonblocking else []),
        ]
        self._log = open(self.dir / "py-spy.log", "wb")  # noqa: SIM115 - closed in stop()
        # py-spy runs beside the load generator, not on the gateway's CPU
        self.proc = subprocess.Popen(
            pinned_argv(argv, PINNING.get("load")), stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {"skipped": self.note or "not started"}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if not self.collapsed.exists():
            log = (self.dir / "py-spy.log").read_text(errors="replace")[-800:]
            return {
                "skipped": f"py-spy wrote nothing (needs ptrace; root or CAP_SYS_PTRACE): {log}"
            }
        stacks = read_collapsed(self.collapsed)
        svg = self.dir / "gateway.svg"
        svg.write_text(
            flamegraph_svg(
                active(stacks), f"syncgate serve (pid {self.pid}), sustained phase, active"
            )
        )
        top = summarise(stacks)
        mine = project_top(stacks)
        (self.dir / "top.txt").write_text(
            "by self\n"
            + format_top(top, len(top))
            + "\n\nthe project's functions (app/, adapters/) by total\n"
            + format_top(mine, len(mine))
            + "\n"
        )
        return {
            "dir": str(self.dir),
            "svg": str(svg),
            "collapsed": str(self.collapsed),
            "samples": sum(active(stacks).values()),
            "idle_thread_samples": sum(stacks.values()) - sum(active(stacks).values()),
            "top": top[:40],
            "project_top": mine[:40],
        }


def read_collapsed(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw format: ``frame;frame;...;leaf COUNT`` per line, root first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks[tuple(short(f) for f in stack.split(";"))] += int(count)
    return stacks


_SITE = re.compile(r"\(/.*?/(site-packages|lib/python3\.\d+)/")


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``;
    the project's own files relative to the repository."""
    frame = _SITE.sub("(", frame)
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    return frame.replace("(" + root, "(")


_IDLE = re.compile(r"^(\w+\.)?(wait|get|_wait_for_tstate_lock) \((threading|queue)\.py:")


def idle(stack: tuple[str, ...]) -> bool:
    """A helper thread blocked in ``threading``/``queue`` (the gateway's WAL checkpoint
    thread between checkpoints, an idle executor worker): py-spy does not always see
    these as idle, and they cost no CPU."""
    return bool(stack) and bool(_IDLE.match(stack[-1]))


def active(stacks: Counter[tuple[str, ...]]) -> Counter[tuple[str, ...]]:
    return Counter({s: n for s, n in stacks.items() if not idle(s)})


def summarise(stacks: Counter[tuple[str, ...]]) -> list[dict[str, Any]]:
    """Per function: samples where it is the leaf (self) and where it is anywhere on the
    stack (total, counted once per stack), as shares of the active samples (idle helper
    threads left out); by self, descending. ``Runner.run`` as a leaf is the event loop's
    own C code (uvloop), which has no Python frames."""
    stacks = active(stacks)
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for stack, n in stacks.items():
        if not stack:
            continue
        own[stack[-1]] += n
        for f in set(stack):
            anywhere[f] += n
    return [
        {
            "function": f,
            "self_pct": 100.0 * n / total,
            "total_pct": 100.0 * anywhere[f] / total,
            "self_samples": n,
        }
        for f, n in own.most_common()
    ]


# The parts of "Where the rest goes" (docs/benchmarks.md): a stack counts in the first
# part any of its frames names (below the event loop's ``Runner.run``); a stack in none
# is the event loop's own C code when its leaf is the loop, else "the rest".
PARTS = (
    ("the WAL checkpoint", ("WalCheckpointer",)),
    ("logging", ("logging/__init__", "(app/logs.py")),
    ("metrics", ("prometheus_client/", "(app/metrics.py")),
    (
        "SQL: the driver (SQLite, asyncpg)",
        (
            "Prepared.run (",
            "do_commit",
            "_sqlite_on_begin",
            "do_execute (",
            "do_executemany",
            "(asyncpg/",
        ),
    ),
    ("SQL: SQLAlchemy's and the store's Python", ("(app/store/", "(sqlalchemy/")),
    ("the vendor calls", ("(app/outbound.py", "(aiohttp/", "(httpx/", "(adapters/_http.py")),
    ("receiving webhooks", ("(uvicorn/", "(litestar/", "(app/http/", "(app/serving.py")),
)


def parts(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    """Active samples by part (``PARTS``), each sample counted once."""
    out: Counter[str] = Counter()
    for stack, n in active(stacks).items():
        st = list(stack)
        loop = next((i for i, f in enumerate(st) if f.startswith("Runner.run ")), None)
        if loop is not None:
            st = st[loop + 1 :]
        for name, keys in PARTS:
            if any(k in f for f in st for k in keys):
                out[name] += n
                break
        else:
            leaf = st[-1] if st else "Runner.run (asyncio/runners.py)"
            looping = "runners.py" in leaf or "base_events.py" in leaf
            out["the event loop itself" if looping else "the rest"] += n
    return out


def format_top(top: list[dict[str, Any]], n: int = 15) -> str:
    lines = [f"{'self %':>7} {'total %':>8}  function"]
    for row in top[:n]:
        lines.append(f"{row['self_pct']:7.1f} {row['total_pct']:8.1f}  {row['function']}")
    return "\n".join(lines)


def project_top(stacks: Counter[tuple[str, ...]]) -> list[dict[str, Any]]:
    """The project's own functions (app/, adapters/) by total share: where its code is on
    the stack, whatever library the leaf is in. The entry frames (on 95 % or more of the
    event loop's stacks: the CLI's ``main``, ``serving.run``) are left out, however much
    a helper thread such as the WAL checkpoint takes besides."""
    stacks = active(stacks)
    total = sum(stacks.values()) or 1
    loop = sum(n for s, n in stacks.items() if any(f.startswith("Runner.run ") for f in s))
    anywhere: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, n in stacks.items():
        for f in set(stack):
            if "(app/" in f or "(adapters/" in f:
                anywhere[f] += n
        if stack:
            own[stack[-1]] += n
    return [
        {
            "function": f,
            "self_pct": 100.0 * own[f] / total,
            "total_pct": 100.0 * n / total,
            "self_samples": own[f],
        }
        for f, n in anywhere.most_common()
        if n < 0.95 * (loop or total)
    ]


def flamegraph_svg(stacks: Counter[tuple[str, ...]], title: str, width: int = 1200) -> str:
    """A plain flame graph: root at the bottom, each frame as wide as its samples,
    children sorted by name; hover a frame for its name and share."""
    tree: dict[str, Any] = {"n": 0, "kids": {}}
    for stack, n in stacks.items():
        node = tree
        node["n"] += n
        for f in stack:
            node = node["kids"].setdefault(f, {"n": 0, "kids": {}})
            node["n"] += n
    total = tree["n"] or 1
    row_h, pad_top = 16, 30

    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(k) for k in node["kids"].values()), default=0)

    levels = depth(tree)
    height = pad_top + levels * row_h + 10
    scale = (width - 20) / total
    rects: list[str] = []

    def walk(node: dict[str, Any], x: float, level: int) -> None:
        for name in sorted(node["kids"]):
            kid = node["kids"][name]
            w = kid["n"] * scale
            if w >= 0.3:
                y = height - 10 - (level + 1) * row_h
                h = sum(ord(c) for c in name.split(" ", 1)[0])
                color = f"rgb({205 + h % 50},{90 + h * 7 % 120},{40 + h * 3 % 50})"
                label = html.escape(name)
                share = 100.0 * kid["n"] / total
                text = html.escape(name[: max(0, int(w / 7))]) if w > 35 else ""
                rects.append(
                    f"<g><title>{label} ({kid['n']} samples, {share:.2f}%)</title>"
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 1}" '
                    f'fill="{color}" rx="2"/>'
                    f'<text x="{x + 3:.1f}" y="{y + row_h - 4}">{text}</text></g>'
                )
                walk(kid, x, level + 1)
            x += w

    walk(tree, 10.0, 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>'
        f'<text x="10" y="20" font-size="14">{html.escape(title)}: {total} samples</text>'
        + "".join(rects)
        + "</svg>\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m bench.profile FILE.collapsed", file=sys.stderr)
        return 2
    stacks = read_collapsed(Path(args[0]))
    print(format_top(summarise(stacks), 15))
    by_part = parts(stacks)
    total = sum(by_part.values()) or 1
    print("\nby part (each sample counted once, in the first part it falls in)")
    for name, n in by_part.most_common():
        print(f"{100.0 * n / total:7.1f} %  {name}")
    print("\nthe project's functions (app/, adapters/) by total")
    print(format_top(project_top(stacks), 15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
