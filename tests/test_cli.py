"""The ``syncgate`` commands as an operator runs them: real subprocesses
(``python -m app.cli ...``) from the repository root, judged by exit code, output and
what they leave behind (a migrated database, a simulator answering on its port)."""

from __future__ import annotations

import base64
import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app import tables
from app.serving import bind_socket, spare_port
from app.store.database import newest_revision
from tests.cli_support import (
    COMMAND_TIMEOUT_S,
    ROOT,
    clean_env,
    simulator,
    syncgate,
)

pytestmark = pytest.mark.slow  # spawns real processes


# -- check-config --------------------------------------------------------------------------


def test_check_config_accepts_the_shipped_config() -> None:
    result = syncgate("check-config", "config.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config.yaml: OK (4 systems"), result.stdout


def test_check_config_refuses_a_broken_file_naming_file_line_and_key(tmp_path: Path) -> None:
    shipped = (ROOT / "config.yaml").read_text().splitlines()
    (line_no,) = [n for n, line in enumerate(shipped, 1) if "max_attempts:" in line]
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "\n".join(re.sub(r"max_attempts: \d+", "max_attempts: -3", line) for line in shipped)
    )
    result = syncgate("check-config", str(broken))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"{broken}:{line_no}: dispatcher.max_attempts:" in result.stderr, result.stderr
    assert "OK" not in result.stdout


# -- migrate -------------------------------------------------------------------------------


def test_migrate_creates_the_schema_in_a_fresh_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    result = syncgate("migrate", env=clean_env(SYNCGATE_DATABASE_URL=f"sqlite:///{db}"))
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stdout, result.stdout  # progress, per step
    with contextlib.closing(sqlite3.connect(db)) as conn:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {t.name for t in tables.metadata.sorted_tables} <= names, names
    assert version
    # running it again on an up-to-date database changes nothing and still succeeds
    again = syncgate("migrate", env=clean_env(SYNCGATE_DATABASE_URL=f"sqlite:///{db}"))
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stdout and "up to date" in again.stdout


# -- simulate ------------------------------------------------------------------------------

#: vendor -> (auth header, prefix, a list endpoint of its API)
VENDOR_APIS = {
    "hookstream": ("X-API-Key", "", "/v1/issues"),
    "devhelm": ("Authorization", "Bearer ", "/api/v1/status-pages/{page}/incidents"),
    "inboxops": ("Authorization", "Bearer ", "/api/v1/tickets"),
    "incidentio": ("Authorization", "Bearer ", "/v3/follow_ups"),
}


@pytest.mark.parametrize("vendor", sorted(VENDOR_APIS))
def test_simulate_serves_the_vendor_api_behind_its_api_key(vendor: str) -> None:
    key = f"cli-test-key-{vendor}"
    header, prefix, path = VENDOR_APIS[vendor]
    port = spare_port()
    with simulator(vendor, port, key) as (url, proc):
        assert url == f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10.0) as client:
            if vendor == "devhelm":  # incidents live under a status page
                page = client.post("/_sim/status-pages", json={"name": "CLI test page"})
                assert page.status_code == 201, page.text
                path = path.format(page=page.json()["id"])
            good = client.get(path, headers={header: prefix + key})
            assert good.status_code == 200, good.text
            assert isinstance(good.json(), dict | list)
            bad = client.get(path, headers={header: prefix + key + "-wrong"})
            assert bad.status_code == 401, bad.text
            missing = client.get(path)
            assert missing.status_code == 401, missing.text
        proc.terminate()
        assert proc.wait(timeout=COMMAND_TIMEOUT_S) == 0, "SIGTERM stops it cleanly"


def test_simulate_plays_the_behaviour_it_is_given() -> None:
    port = spare_port()
    with (
        simulator(
            "incidentio",
            port,
            "cli-key",
            "--behaviour",
            "put_omitted=clear",
            "--webhook-time-scale",
            "0.5",
        ) as (url, _proc),
        httpx.Client(base_url=url, timeout=10.0) as client,
    ):
        assert client.get("/_sim/behaviour").json()["behaviour"]["put_omitted"] == "clear"


def test_simulate_refuses_an_unknown_behaviour_in_one_line() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "simulate",
            "incidentio",
            "--port",
            "0",
            "--api-key",
            "k",
            "--behaviour",
            "put_omitted=sometimes",
        ],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "syncgate simulate: behaviour put_omitted: 'sometimes' is not one of keep, clear"
    ]


def test_a_simulator_starts_without_loading_the_gateway() -> None:
    """``syncgate simulate`` (four per demo, test and benchmark installation) and
    ``--help`` load the command line and the simulators only: not the engine, the store
    or SQLAlchemy, which are most of a gateway's start-up time."""
    code = (
        "import sys; from app.cli import build_parser; from adapters import simulator_class;"
        " build_parser(); simulator_class('inboxops');"
        " print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'"
        " or m.startswith(('app.engine', 'app.store', 'app.backfill'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_version_init_and_a_port_in_use(tmp_path: Path) -> None:
    env = clean_env()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == "syncgate 0.1.0"
    made = run("init")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "config.yaml").read_bytes() == (ROOT / "config.yaml").read_bytes()
    assert "SYNCGATE_ADMIN_KEY" in made.stdout and "check-config config.yaml" in made.stdout
    again = run("init")
    assert again.returncode == 1 and "exists" in again.stderr
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    for name in re.findall(r"^  (SYNCGATE_\w+)$", made.stdout, re.M):
        env[name] = secret if name.endswith("SECRET") else "key-for-the-port-test"
    busy = bind_socket()
    try:
        port = str(busy.getsockname()[1])
        for command in (["simulate", "devhelm", "--api-key", "k"], ["serve"]):
            done = run(*command, "--port", port)
            assert done.returncode == 1, done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.endswith("(another process uses it: pick another --port)"), line
    finally:
        busy.close()


def test_a_spare_port_is_free_and_out_of_reach_of_outgoing_connections() -> None:
    """The tests start ``syncgate serve`` on a port picked beforehand: it must be one no
    outgoing connection can take as its local port before the gateway binds it (one
    did, and the gateway could not listen), so one from below the ephemeral range."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {spare_port() for _ in range(20)}
    assert len(ports) > 1  # picked at random, not one fixed port
    for port in ports:
        assert port < low, (port, low)
        bind_socket(port=port).close()  # and nothing listens there


def test_an_invalid_config_is_exit_1_for_every_command(tmp_path: Path) -> None:
    """One meaning, one code: check-config, serve and migrate refuse a missing or broken
    config with exit 1 and the problems on stderr, never a traceback."""
    missing = str(tmp_path / "nowhere.yaml")
    for command in (
        ["check-config", missing],
        ["serve", "--config", missing, "--port", "0"],
        ["migrate", "--config", missing],
    ):
        done = syncgate(*command, env=clean_env())
        assert done.returncode == 1, (command, done.stderr)
        assert "cannot read" in done.stderr and "Traceback" not in done.stderr, done.stderr
    serve = syncgate("serve", "--config", missing, "--port", "0")
    assert serve.stderr.splitlines()[0] == "syncgate: invalid configuration (1 problem):"


@pytest.mark.parametrize(
    "command",
    [["serve"], ["simulate", "hookstream", "--api-key", "k"], ["demo"]],
    ids=["serve", "simulate", "demo"],
)
@pytest.mark.parametrize("port", ["99999", "-5", "http"])
def test_a_port_out_of_range_is_a_usage_error(command: list[str], port: str) -> None:
    """``--port 99999`` ended in an OverflowError traceback from the bind."""
    done = syncgate(*command, "--port", port)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "error: argument --port:" in done.stderr.splitlines()[-1], done.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rpm", "-5"),
        ("--rpm", "0"),
        ("--rpm", "many"),
        ("--latency-ms", "-1"),
        ("--latency-ms", "inf"),
    ],
)
def test_a_simulator_limit_out_of_range_is_a_usage_error(option: str, value: str) -> None:
    """``simulate --rpm -5`` started a simulator that refused every call with 429."""
    done = syncgate("simulate", "hookstream", "--port", "0", "--api-key", "k", option, value)
    assert done.returncode == 2, done.stderr
    assert f"error: argument {option}:" in done.stderr.splitlines()[-1], done.stderr


def test_init_where_it_cannot_write_says_why_in_one_line(tmp_path: Path) -> None:
    """A missing directory or a directory as the path ended in a traceback."""
    (tmp_path / "d").mkdir()
    for args, reason in (
        ([str(tmp_path / "nowhere" / "x.yaml")], "No such file or directory"),
        (
            [str(tmp_path / "d"), "--force"],
            f"is a directory; give the file to write, such as {tmp_path / 'd' / 'config.yaml'}",
        ),
        ([str(tmp_path / "d")], "is a directory"),
    ):
        done = syncgate("init", *args)
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("syncgate init: ") and reason in line, line


def test_migrate_reads_an_empty_database_url_variable_as_serve_does(tmp_path: Path) -> None:
    """An empty SYNCGATE_DATABASE_URL is ignored by serve and backfill (the config's
    database_url applies); migrate took it for a URL and ended in a traceback."""
    db = tmp_path / "from-the-config.db"
    config = tmp_path / "config.yaml"
    shipped = (ROOT / "config.yaml").read_text()
    line = 'database_url: "sqlite:///var/syncgate.db"'
    assert line in shipped
    config.write_text(shipped.replace(line, f'database_url: "sqlite:///{db}"'))
    done = syncgate("migrate", "--config", str(config), env=clean_env(SYNCGATE_DATABASE_URL=""))
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and db.exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("garbage", "not a database URL"),
        ("mysql://sg:Sup3r@db/sg", "'mysql' is not supported"),
        ("sqlite:///", "an in-memory SQLite database"),
    ],
)
def test_a_database_url_variable_naming_no_usable_database_is_one_line(
    url: str, problem: str
) -> None:
    """A URL Syncgate cannot use in SYNCGATE_DATABASE_URL ended serve and migrate in a
    traceback (ArgumentError, ModuleNotFoundError), and 'sqlite:///' migrated a database
    in memory and said it was up to date."""
    env = clean_env(SYNCGATE_DATABASE_URL=url)
    for command in (["serve", "--port", "0"], ["migrate"], ["backfill", "--dry-run"]):
        done = syncgate(*command, "--config", "config.yaml", env=env)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"syncgate {command[0]}: SYNCGATE_DATABASE_URL: {problem}"), line
        assert "up to date" not in done.stdout
        assert "Sup3r" not in done.stderr + done.stdout


def serving_env(**extra: str) -> dict[str, str]:
    """A clean environment with every variable the shipped config.yaml reads."""
    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    env = clean_env(**extra)
    for vendor in ("HOOKSTREAM", "DEVHELM", "INBOXOPS", "INCIDENTIO"):
        env[f"SYNCGATE_{vendor}_API_KEY"] = "key"
        env[f"SYNCGATE_{vendor}_WEBHOOK_SECRET"] = secret
    return env


def test_a_database_that_cannot_be_used_stops_serve_and_migrate_in_one_line(
    tmp_path: Path,
) -> None:
    """A database refusing connections, or an SQLite file that cannot be made, ended serve,
    migrate and backfill in a traceback; the line names the database, never its
    password."""
    closed = bind_socket()
    port = closed.getsockname()[1]
    closed.close()
    (tmp_path / "a-file").write_text("")
    cases = {
        f"postgresql://sg:Sup3r@127.0.0.1:{port}/sg": (
            f"cannot connect to postgresql://sg:***@127.0.0.1:{port}/sg (Connection refused)"
        ),
        f"sqlite:///{tmp_path}/a-file/gateway.db": (  # its directory is a file
            f"cannot open sqlite:///{tmp_path}/a-file/gateway.db (File exists)"
        ),
    }
    for url, problem in cases.items():
        env = serving_env(SYNCGATE_DATABASE_URL=url)
        for command in (
            ["serve", "--port", "0"],
            ["migrate"],
            ["backfill", "--since", "1d"],
            ["backfill", "--since", "1d", "--dry-run"],
        ):
            done = syncgate(*command, "--config", "config.yaml", env=env)
            assert done.returncode == 1, (command, done.stderr)
            (line,) = done.stderr.splitlines()
            assert line == f"syncgate {command[0]}: database: {problem}", line
            assert "Sup3r" not in done.stdout


def test_a_database_a_newer_syncgate_migrated_is_named_so_and_left_alone(
    tmp_path: Path,
) -> None:
    """serve and migrate on a database whose schema a newer version brought further said
    only alembic's "Can't locate revision identified by '0099'": the line says what
    that means and what to do, and the database is not touched."""
    db = tmp_path / "newer.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0099')")
        conn.commit()
    env = serving_env(SYNCGATE_DATABASE_URL=f"sqlite:///{db}")
    for command in (["serve", "--port", "0"], ["migrate"]):
        done = syncgate(*command, "--config", "config.yaml", env=env)
        assert done.returncode == 1, (command, done.stderr)
        (line,) = done.stderr.splitlines()
        assert line == (
            f"syncgate {command[0]}: database: cannot bring the schema of sqlite:///{db} up"
            " to date (its schema is at revision '0099', newer than this Syncgate knows (up"
            f" to {newest_revision()!r}): a newer Syncgate migrated it; run that version, or"
            " restore the backup taken before the upgrade)"
        ), line
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables_now = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        assert tables_now == [("alembic_version",)]


def test_an_unset_variable_is_reported_at_the_line_that_names_it() -> None:
    """serve and backfill said ``<environment>: ...``: no file, no line to go to."""
    env = serving_env()
    del env["SYNCGATE_DEVHELM_API_KEY"]
    env["SYNCGATE_INBOXOPS_WEBHOOK_SECRET"] = ""
    lines = (ROOT / "config.yaml").read_text().splitlines()
    key_line = next(i for i, t in enumerate(lines, 1) if "SYNCGATE_DEVHELM_API_KEY" in t)
    secret_line = next(i for i, t in enumerate(lines, 1) if "SYNCGATE_INBOXOPS_WEBHOOK_SECRET" in t)
    for command in (["serve", "--port", "0"], ["backfill", "--since", "1d", "--dry-run"]):
        done = syncgate(*command, "--config", "config.yaml", env=env)
        assert done.returncode == 1, (command, done.stderr)
        assert done.stderr.splitlines() == [
            "syncgate: invalid configuration (2 problems):",
            f"  config.yaml:{key_line}: systems.devhelm.api_key_env: environment variable"
            " SYNCGATE_DEVHELM_API_KEY is not set",
            f"  config.yaml:{secret_line}: systems.inboxops.webhook_secret_envs[0]: environment"
            " variable SYNCGATE_INBOXOPS_WEBHOOK_SECRET is not set",
        ], command


def test_serve_refuses_an_alert_url_that_is_not_http_without_showing_it(tmp_path: Path) -> None:
    """A URL that is not http(s) would fail at the first alert, long after the start."""
    config = tmp_path / "config.yaml"
    config.write_text(
        (ROOT / "config.yaml").read_text() + "alerts:\n  url_env: SYNCGATE_ALERT_URL\n"
    )
    line = len(config.read_text().splitlines())
    done = syncgate(
        "serve", "--port", "0", "--config", str(config),
        env=serving_env(SYNCGATE_ALERT_URL="ftp://hooks.example/s3cr3t"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "syncgate: invalid configuration (1 problem):",
        f"  {config}:{line}: alerts.url_env: environment variable SYNCGATE_ALERT_URL is not"
        " an http(s) URL (alerts are posted to it)",
    ]
    assert "s3cr3t" not in done.stdout + done.stderr


def test_serve_refuses_a_config_that_enables_no_system(tmp_path: Path) -> None:
    """serve started with an empty config and never became ready (/readyz 503)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    for command in (["serve", "--port", "0"], ["backfill", "--dry-run"]):
        done = syncgate(*command, "--config", str(empty))
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert done.stderr.splitlines() == [
            "syncgate: invalid configuration (1 problem):",
            f"  {empty}: systems: no system is configured: add at least one (hookstream,"
            " devhelm, inboxops, incidentio); syncgate init writes a commented example",
        ]
