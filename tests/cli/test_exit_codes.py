"""The exit status of every ``streamforge`` path, table-driven, against real components.

Each case runs the console entry point (``python -m streamforge_pipelines.cli``, what the
``streamforge`` script runs) in a subprocess with a bounded wait, with only the settings the test
gives it: the session broker with fresh topics, an exchange simulator this module starts as a child
process, a fresh data directory. Every case asserts the exit status and that stderr holds no
traceback; a failure also one ``error:`` line with the words that name its cause; a success that
reports (one-shot loader, dummy modes) exactly one JSON object on stdout.

``streamforge run`` has its own table (``tests/cli/test_run_errors.py``); ``dev`` and the serving
workers (``worker connector``, ``worker loader`` without a task, ``simulator``) run until stopped, so
only their ``--help`` and their refusals of bad input are here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

import click
import orjson
import pytest
from simulator_process import simulator_process

from streamforge_pipelines.cli import main
from streamforge_pipelines.settings import ENV_VARS
from streamforge_pipelines.stack import free_port

#: Longer than any case needs (the unreachable exchange is retried for about 5 s); longer = a hang.
HANG_S = 120
CLI = [sys.executable, "-m", "streamforge_pipelines.cli"]
GOOD_COMMAND = {
    "command": "start",
    "queue_id": "wf-btcusdt-api_candles_1h-20240603-exit01",
    "target": "loader-producer",
    "symbol": "BTCUSDT",
    "type": "api_candles_1h",
    "time_range": "2024-06-03:2024-06-03",
    "source": "rest",
}


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every group and command of the CLI, as the arguments that name it."""
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    #: Words the one ``error:`` line must hold (a failure), or None for a success.
    words: tuple[str, ...] | None = None
    _: KW_ONLY
    #: The success prints exactly one JSON object on stdout; these of its keys must hold these values.
    report: dict[str, object] | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None


def _cases(tmp: Path, sim_url: str) -> list[Case]:
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("seed: [1,\n")
    good, bad, not_utf8, empty = tmp / "good.json", tmp / "bad.json", tmp / "latin1.json", tmp / "empty.json"
    good.write_bytes(orjson.dumps(GOOD_COMMAND))
    bad.write_bytes(orjson.dumps({**GOOD_COMMAND, "type": "api_candles_7m"}))
    not_utf8.write_bytes(b'{"symbol": "\xe9"}')
    empty.write_bytes(b"")
    nothing = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    one_shot = ["worker", "loader", "--symbol", "BTCUSDT", "--interval", "1h", "--start", "2024-06-03"]
    return [
        # --- validate-command
        Case("validate-command good", ["validate-command", str(good)], 0, report={"type": "api_candles_1h"}),
        Case("validate-command stdin", ["validate-command", "-"], 0, stdin=orjson.dumps(GOOD_COMMAND)),
        Case("validate-command bad", ["validate-command", str(bad)], 2, ("command.type", "'api_candles_7m'")),
        Case(
            "validate-command missing file", ["validate-command", str(tmp / "nope.json")], 2, ("nope.json",)
        ),
        Case("validate-command directory", ["validate-command", str(tmp)], 2, ("Is a directory",)),
        Case("validate-command not UTF-8", ["validate-command", str(not_utf8)], 2, ("not UTF-8", "0xe9")),
        Case("validate-command empty", ["validate-command", str(empty)], 2, ("empty",)),
        Case("validate-command not JSON", ["validate-command", "-"], 2, ("not valid JSON",), stdin=b"{nope"),
        # --- worker loader, one task
        Case("one-shot loader", one_shot, 0, report={"records": 24, "partitions": {"0": 24}}),
        Case(
            "one-shot loader --command",
            ["worker", "loader", "--command", orjson.dumps(GOOD_COMMAND).decode()],
            0,
            report={"records": 24, "queue_id": GOOD_COMMAND["queue_id"]},
        ),
        Case(
            "one-shot loader --command -",
            ["worker", "loader", "--command", "-"],
            0,
            report={"records": 24},
            stdin=orjson.dumps(GOOD_COMMAND),
        ),
        Case(
            "one-shot unknown symbol",
            ["worker", "loader", "--symbol", "NOPEUSDT", "--interval", "1h", "--start", "2024-06-03"],
            1,
            ("Invalid symbol",),
        ),
        Case(
            "one-shot unreachable exchange",
            one_shot,
            1,
            ("Cannot connect", nothing[7:]),
            env={"EXCHANGE_URL": nothing},
        ),
        Case(
            "one-shot before Binance", [*one_shot[:-1], "2010-01-01"], 2, ("command.time_range", "2017-07-14")
        ),
        Case(
            "one-shot bad command", ["worker", "loader", "--command", '{"command":"start"}'], 2, ("command.",)
        ),
        Case("one-shot no --start", one_shot[:-2], 2, ("--start",)),
        Case("one-shot USD-M 1s", [*one_shot, "--interval", "1s", "--market", "usdm"], 2, ("only on spot",)),
        # --- dummy modes, short runs
        Case(
            "dummy kafka-ping", ["dummy", "kafka-ping", "--count", "3"], 0, report={"ok": True, "received": 3}
        ),
        Case(
            "dummy load",
            ["dummy", "load", "--count", "20", "--duration", "5"],
            0,
            report={"ok": True, "acked": 20},
        ),
        Case(
            "dummy impersonate",
            ["dummy", "impersonate", "finish", "--steps", "1", "--step-s", "0", "--no-connector-acks"],
            0,
            report={"ok": True, "behaviour": "finish"},
        ),
        # --- simulator: bad configuration
        Case("simulator bad YAML", ["simulator", "--config", str(bad_yaml)], 2, ("simulator",)),
        Case(
            "simulator missing config",
            ["simulator", "--config", str(tmp / "no.yaml")],
            2,
            ("does not exist",),
        ),
        Case(
            "simulator SIMULATOR_CONFIG bad YAML",
            ["simulator"],
            2,
            ("SIMULATOR_CONFIG", "not valid YAML"),
            env={"SIMULATOR_CONFIG": str(bad_yaml)},
        ),
        # --- streamforge run: its own table, tests/cli/test_run_errors.py
    ]


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamforge simulator`` as a child process on a free port; yields its URL."""
    with simulator_process(tmp_path_factory.mktemp("simulator"), "--seed", "42") as url:
        yield url


def _env(tmp: Path, bootstrap: str, topics: dict[str, str], sim_url: str) -> dict[str, str]:
    """This process's environment without any StreamForge setting, then the test's."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {
        **base,
        "STREAMFORGE_DATA_DIR": str(tmp / "data"),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_CONTROL": topics["control"],
        "KAFKA_TOPIC_EVENTS": topics["events"],
        "KAFKA_TOPIC_CANDLES": topics["candles"],
        "KAFKA_TOPIC_CANDLES_USDM": topics["candles_usdm"],
        "KAFKA_TOPIC_TRADES": topics["trades"],
        "KAFKA_TOPIC_CHECKPOINTS": topics["checkpoints"],
        "KAFKA_DATA_PARTITIONS": "1",
        "EXCHANGE_URL": sim_url,
        "DAGSTER_HOME": str(tmp / "dagster"),
    }


def _run(
    args: list[str], env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run([*CLI, *args], env=env, input=stdin or b"", capture_output=True, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"streamforge {' '.join(args)} did not end within {HANG_S}s (a hang)")


def _check(case: Case, proc: subprocess.CompletedProcess[bytes]) -> None:
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    where = f"{case.name}: exit {proc.returncode}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    assert proc.returncode == case.code, where
    assert "Traceback" not in err and "Traceback" not in out, where
    if case.words is not None:
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, where
        for word in case.words:
            assert word in errors[0], where
    if case.report is not None:
        lines = out.splitlines()
        assert len(lines) == 1, where
        report = orjson.loads(lines[0])
        assert isinstance(report, dict), where
        for key, value in case.report.items():
            assert report.get(key) == value, f"{key}: {report.get(key)!r} != {value!r}\n{where}"


def test_every_help_exits_0() -> None:
    """``--help`` of the CLI and of each of its groups and commands."""
    paths = list(_commands(main))
    assert ("validate-command",) in paths and ("worker", "loader") in paths  # the walk found them
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    for path in paths:
        proc = _run([*path, "--help"], env)
        text = proc.stdout.decode()
        assert proc.returncode == 0, f"{path}: {proc.stderr.decode()[-2000:]}"
        assert text.startswith("Usage: ") and "Traceback" not in proc.stderr.decode(), path


def test_exit_status_of_every_cli_path(
    simulator: str, kafka_bootstrap: str, kafka_topics, tmp_path: Path
) -> None:
    cases = _cases(tmp_path, simulator)
    env = _env(tmp_path, kafka_bootstrap, kafka_topics(partitions=1), simulator)
    failures = []
    for case in cases:
        proc = _run(case.args, {**env, **case.env}, case.stdin)
        try:
            _check(case, proc)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)
