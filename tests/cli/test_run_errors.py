"""``streamforge run`` with bad input: every case one line on stderr, the right exit code, no traceback.

The bad-input matrix of the hardening issue, table-driven: impossible ranges, bad flags and
settings, services that do not answer (Kafka, ArangoDB, MinIO, the exchange), an unusable data
directory, a corrupt store file, an unknown symbol, and a step that fails (its cause line, not
Dagster's stack). Each case runs the real console entry point in a subprocess with a bounded wait
(a hang fails the test), on a fresh data directory; the cases that get as far as the stack use the
session broker with fresh topics and the exchange simulator the stack starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamforge_pipelines.settings import ENV_VARS
from streamforge_pipelines.stack import free_port

#: A bad input must be answered well before this; longer counts as a hang.
HANG_S = 120


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    words: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Start the stack on the session broker (the check happens after the stack is up).
    stack: bool = False
    #: Text that must not appear anywhere in the output (a secret).
    secret: str | None = None


def _cases(tmp: Path) -> list[Case]:
    today = datetime.now(UTC).date().isoformat()
    port = free_port()  # nothing listens there
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("seed: [1,\n")
    a_file = tmp / "a-file"
    a_file.write_text("not a directory\n")
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "streamforge.db").write_bytes(bytes(range(256)) * 40)
    return [
        Case("days-before-first-partition", ["--days", "100000"], 2, ["--days 100000", "2017-07-14"]),
        Case(
            "start-before-first-partition", ["--start", "2010-01-01"], 2, ["--start 2010-01-01", "2017-07-14"]
        ),
        Case("end-today", ["--end", today], 2, [f"--end {today}", "only closed days"]),
        Case("end-before-start", ["--start", "2024-08-02", "--end", "2024-08-01"], 2, ["before --start"]),
        Case("start-and-days", ["--start", "2024-08-01", "--days", "2"], 2, ["--start and --days"]),
        Case("days-overflow", ["--days", "99999999"], 2, ["--days 99999999"]),
        Case("bad-interval", ["--interval", "7m"], 2, ["--interval", "'7m'"]),
        Case("bad-symbols", ["--symbols", "BTC-USDT"], 2, ["--symbols", "BTC-USDT"]),
        Case("bad-date", ["--start", "2024-13-01"], 2, ["--start", "2024-13-01"]),
        Case(
            "bad-yaml",
            [],
            2,
            ["SIMULATOR_CONFIG", "not valid YAML", "line 2"],
            {"SIMULATOR_CONFIG": str(bad_yaml)},
        ),
        Case(
            "missing-config",
            [],
            2,
            ["SIMULATOR_CONFIG", "no-such.yaml"],
            {"SIMULATOR_CONFIG": str(tmp / "no-such.yaml")},
        ),
        Case("bad-number-setting", [], 2, ["LOADER_CONCURRENCY"], {"LOADER_CONCURRENCY": "lots"}),
        Case(
            "kafka-unreachable",
            [],
            1,
            ["KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}", "not answering"],
            {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
        ),
        Case(
            "data-dir-under-a-file",
            [],
            2,
            ["STREAMFORGE_DATA_DIR", "is a file"],
            {"STREAMFORGE_DATA_DIR": str(a_file / "data")},
        ),
        Case(
            "arango-unreachable",
            [],
            1,
            ["ARANGO_URL", f"127.0.0.1:{port}", "not answering"],
            {"ARANGO_URL": f"http://root:s3cret-pw@127.0.0.1:{port}"},
            stack=True,
            secret="s3cret-pw",
        ),
        Case(
            "exchange-unreachable",
            [],
            1,
            ["EXCHANGE_URL", f"127.0.0.1:{port}", "not answering"],
            {"EXCHANGE_URL": f"http://127.0.0.1:{port}"},
            stack=True,
        ),
        Case(
            "minio-unreachable",
            [],
            1,
            ["MINIO_ENDPOINT", f"127.0.0.1:{port}", "not answering"],
            {"MINIO_ENDPOINT": f"127.0.0.1:{port}", "MINIO_SECRET_KEY": "minio-s3cret"},
            stack=True,
            secret="minio-s3cret",
        ),
        Case(
            "corrupt-store",
            [],
            1,
            ["store", "streamforge.db", "not a database"],
            {"STREAMFORGE_DATA_DIR": str(corrupt)},
            stack=True,
        ),
        Case(
            "unknown-symbol",
            ["--symbols", "BTCUSDT,FOOBARUSDT"],
            2,
            ["symbols not listed", "FOOBARUSDT"],
            stack=True,
        ),
        # The step fails (the archive has no file before BTCUSDT was listed on 2017-08-17): the cause
        # line of the failed task, not Dagster's stack.
        Case(
            "step-failure-cause",
            ["--symbols", "BTCUSDT", "--source", "archive", "--start", "2017-08-01", "--end", "2017-08-01"],
            1,
            ["candles_1h", "task(s) failed", "BTCUSDT-1h-2017-08-01.zip", "404"],
            {"STREAMFORGE_INTERVAL": "1h"},
            stack=True,
        ),
    ]


def _base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update({"STREAMFORGE_DATA_DIR": str(tmp / "data"), "DAGSTER_HOME": str(tmp / "dagster")})
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "streamforge_pipelines.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`streamforge {' '.join(args)}` did not answer within {HANG_S}s: {exc.stderr!r}")


def _stack_env(kafka_bootstrap: str, topics: dict[str, str]) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_CONTROL": topics["control"],
        "KAFKA_TOPIC_EVENTS": topics["events"],
        "KAFKA_TOPIC_CANDLES": topics["candles"],
        "KAFKA_TOPIC_CANDLES_USDM": topics["candles_usdm"],
        "KAFKA_TOPIC_TRADES": topics["trades"],
        "KAFKA_TOPIC_CHECKPOINTS": topics["checkpoints"],
        "KAFKA_CONSUMER_GROUP": f"connector-{topics['control'].rsplit('.', 1)[-1]}",
    }


def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return [c.name for c in _cases(Path(d))]


@pytest.mark.parametrize("name", _names())
def test_bad_input_is_one_line(name: str, tmp_path: Path, kafka_bootstrap: str, kafka_topics) -> None:
    case = next(c for c in _cases(tmp_path) if c.name == name)
    env = _base_env(tmp_path)
    if case.stack:
        env.update(_stack_env(kafka_bootstrap, kafka_topics(1)))
    env.update(case.env)
    args = ["run", *case.args]
    if "--start" not in case.args and "--days" not in case.args and "--end" not in case.args:
        args += ["--start", "2024-08-01", "--end", "2024-08-01"]
    if "--interval" not in case.args and "STREAMFORGE_INTERVAL" not in case.env:
        args += ["--interval", "1h"]
    done = _run([*args, "--no-analytics"] if case.name != "minio-unreachable" else args, env)

    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    errors = [line for line in done.stderr.splitlines() if not line.startswith("progress: ")]
    assert len(errors) == 1, f"expected one line on stderr, got {errors}"
    (line,) = errors
    assert line.startswith("error: "), line
    for word in case.words:
        assert word in line, f"{word!r} not in {line!r}"
    assert done.returncode == case.code, (done.returncode, line)
    if case.secret is not None:
        assert case.secret not in out
        assert case.secret not in _logs(tmp_path)
    if not case.stack or case.name != "step-failure-cause":
        assert done.stdout == "", done.stdout  # nothing ran: no table, no half summary


def _logs(tmp: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in tmp.rglob("*.log"))


def test_debug_keeps_the_traceback(tmp_path: Path) -> None:
    """``--debug`` (and LOG_LEVEL=DEBUG) show the stack of the same error."""
    env = _base_env(tmp_path) | {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    args = ["run", "--start", "2024-08-01", "--end", "2024-08-01"]
    plain = _run(args, env)
    debug = _run(["--debug", *args], env)
    by_env = _run(args, env | {"LOG_LEVEL": "DEBUG"})
    assert plain.returncode == debug.returncode == by_env.returncode == 1
    assert "Traceback" not in plain.stderr
    for done in (debug, by_env):
        assert "Traceback" in done.stderr
        assert "PreflightError: KAFKA_BOOTSTRAP_SERVERS" in done.stderr
