"""Checks a run makes before it starts work, so that a user mistake or a service that is not there
is one line naming the setting (and the host), not a traceback or a hang half-way through a load.

Each check raises :class:`PreflightError`, whose text is that line and whose ``exit_code`` is 2 for
what the user gave (a range, a symbol, a setting's value: a usage error) and 1 for a service that
does not answer. URLs are printed with their credentials redacted.

* :func:`check_range` — the days exist on the exchange: not before :data:`FIRST_DATE` (the first
  daily partition), not today or later (only closed days are loaded);
* :func:`check_data_dir` — ``STREAMFORGE_DATA_DIR`` can be created and written;
* :func:`check_simulator_config` — the ``SIMULATOR_CONFIG`` of a simulator the stack will start
  reads and agrees with its symbols;
* :func:`check_kafka` — ``KAFKA_BOOTSTRAP_SERVERS`` answers Kafka requests;
* :func:`check_store` — ``ARANGO_URL`` answers, and the store opens (a corrupt SQLite file is named);
* :func:`check_exchange` — ``EXCHANGE_URL`` (``EXCHANGE_FUTURES_URL`` for usdm) answers and lists
  every symbol asked for;
* :func:`check_object_store` — ``MINIO_ENDPOINT`` answers with the credentials given.

Dagster-free: the CLI and the stack call these before any run is launched.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from .intervals import FIRST_DATE
from .kafka import BrokerUnavailable, probe
from .settings import Settings, redact_url

#: Seconds a check waits for a service's answer.
TIMEOUT_S = 5.0


class PreflightError(RuntimeError):
    """A check before the run failed; ``str(err)`` is one line, ``exit_code`` 2 (usage) or 1."""

    def __init__(self, line: str, *, exit_code: int = 1) -> None:
        super().__init__(line)
        self.exit_code = exit_code


def check_range(first: date, last: date, today: date, *, first_from: str = "--start") -> None:
    """``first .. last`` are days the exchange can have closed candles for. ``first_from`` names
    what set the first day in the message (``--start``, or ``--days N``)."""
    if last < first:
        raise PreflightError(f"--end {last} is before --start {first}", exit_code=2)
    if first < FIRST_DATE:
        begins = f"{first_from}: the range begins {first},"
        if first_from == "--start":
            begins = f"--start {first} is"
        raise PreflightError(
            f"{begins} before {FIRST_DATE}, the first day Binance has data for (the first daily partition)",
            exit_code=2,
        )
    if last >= today:
        raise PreflightError(
            f"--end {last}: only closed days can be loaded (today is {today}, UTC)", exit_code=2
        )


def check_data_dir(path: Path) -> None:
    """The data directory exists or can be created, and a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise PreflightError(
            f"STREAMFORGE_DATA_DIR: cannot use {path}: {_dir_reason(path, exc)}", exit_code=2
        ) from None


def check_simulator_config(settings: Settings) -> None:
    """The ``SIMULATOR_CONFIG`` of the simulator the stack will start (``EXCHANGE_URL`` unset) reads:
    a missing file, bad YAML, an unknown key or symbol is one line naming the setting and the file.

    It is checked here, where the simulator is about to start, and not when the settings load:
    settings are the bottom layer and never import the simulator. The simulator is imported only
    here, so a process that starts none (a worker) does not load it or register its metrics.
    """
    if settings.exchange_url is not None or settings.simulator_config is None:
        return
    from .simulator.config import check_file

    try:
        check_file(settings.simulator_config)
    except ValueError as exc:
        raise PreflightError(f"settings: SIMULATOR_CONFIG: {exc}", exit_code=2) from None


def check_kafka(bootstrap: str) -> None:
    """The configured cluster answers Kafka requests (one probe per bootstrap server)."""
    try:
        probe(bootstrap, timeout_s=TIMEOUT_S)
    except BrokerUnavailable as exc:
        raise PreflightError(f"KAFKA_BOOTSTRAP_SERVERS: {exc}") from None


def check_store(settings: Settings) -> None:
    """ArangoDB answers at ``ARANGO_URL`` (any HTTP answer will do), then the store opens."""
    from .store import StoreError, store_from_settings

    if settings.arango_url:
        where = redact_url(settings.arango_url)
        reason = _http_reason(_without_credentials(settings.arango_url.rstrip("/") + "/_api/version"))
        if reason is not None:
            raise PreflightError(f"ARANGO_URL: ArangoDB at {where} is not answering ({reason})")
    try:
        store = store_from_settings(settings)
    except StoreError as exc:
        if settings.arango_url:
            raise PreflightError(f"ARANGO_URL: {exc}") from None
        raise PreflightError(f"store: {exc} (move the file away to start an empty store)") from None
    except OSError as exc:  # the SQLite file's directory
        raise PreflightError(f"store: {settings.sqlite_path}: {exc.strerror or exc}", exit_code=2) from None
    store.close()


def check_exchange(settings: Settings, symbols: Sequence[str], market: str = "spot") -> None:
    """The exchange answers and lists every one of ``symbols`` (spot ``exchangeInfo?symbols=``,
    USD-M the whole ``/fapi/v1/exchangeInfo``)."""
    url = settings.rest_url(market)
    if not url:
        return
    setting = "EXCHANGE_FUTURES_URL" if market == "usdm" and settings.exchange_futures_url else "EXCHANGE_URL"
    where = redact_url(url)
    base = url.rstrip("/")
    if market == "usdm":
        listed = _symbols_of(_get_json(f"{base}/fapi/v1/exchangeInfo", setting, where))
        unknown = [s for s in symbols if s not in listed]
    else:
        query = urllib.parse.urlencode({"symbols": json.dumps(list(symbols), separators=(",", ":"))})
        answer = _get_json(f"{base}/api/v3/exchangeInfo?{query}", setting, where, invalid_ok=True)
        if answer is not None:
            listed = _symbols_of(answer)
            unknown = [s for s in symbols if s not in listed]
        else:  # -1121 Invalid symbol: the exchange does not say which; ask one by one
            unknown = [
                s
                for s in symbols
                if _get_json(f"{base}/api/v3/exchangeInfo?symbol={s}", setting, where, invalid_ok=True)
                is None
            ]
    if unknown:
        raise PreflightError(
            f"symbols not listed on the exchange at {where} ({market}): {', '.join(unknown)} "
            "(check --symbols / STREAMFORGE_UNIVERSE)",
            exit_code=2,
        )


def check_object_store(settings: Settings) -> None:
    """The MinIO/S3 endpoint answers and takes the credentials (the bucket may not exist yet)."""
    if not settings.minio_endpoint:
        return
    from .models import from_settings

    where = redact_url(settings.minio_endpoint)
    try:
        store = from_settings(settings)
        check = getattr(store, "ping", None)
        if check is not None:
            check(timeout_s=TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure here is one line naming the setting
        cause = exc.__cause__ or exc
        errno_text = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(cause))
        if errno_text or isinstance(cause, OSError):
            reason = errno_text.group(1).lower() if errno_text else _os_reason(cause)
            line = f"MINIO_ENDPOINT: object store at {where} is not answering ({reason})"
            raise PreflightError(line) from None
        raise PreflightError(f"MINIO_ENDPOINT: object store at {where}: {_short(exc)}") from None


# ---- helpers -------------------------------------------------------------------------------------


def _get_json(url: str, setting: str, where: str, *, invalid_ok: bool = False) -> object:
    """GET ``url`` as JSON; None for Binance's -1121 (invalid symbol) when ``invalid_ok``."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()[:2000].decode("utf-8", "replace")
        if invalid_ok and exc.code == 400 and '"code":-1121' in body.replace(" ", ""):
            return None
        answer = " ".join(body[:200].split())
        raise PreflightError(f"{setting}: the exchange at {where} answered {exc.code}: {answer}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise PreflightError(
            f"{setting}: the exchange at {where} is not answering ({_os_reason(reason)})"
        ) from None
    except ValueError as exc:
        raise PreflightError(f"{setting}: the exchange at {where} did not answer JSON ({exc})") from None


def _symbols_of(answer: object) -> set[str]:
    entries = answer.get("symbols", []) if isinstance(answer, dict) else []
    return {str(e.get("symbol")) for e in entries if isinstance(e, dict)}


def _http_reason(url: str) -> str | None:
    """None when anything answers HTTP at ``url`` (an error status is an answer), else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return _os_reason(exc.reason)
    except OSError as exc:
        return _os_reason(exc)


def _without_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def _os_reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.timeout | TimeoutError):
        return f"no answer within {TIMEOUT_S:.0f}s"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return _short(reason)


def _dir_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOTDIR or isinstance(exc, NotADirectoryError):
        parent = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        return f"{parent} is a file, not a directory" if parent else "a part of the path is a file"
    if isinstance(exc, FileExistsError) or (path.exists() and not path.is_dir()):
        return "it is a file, not a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or _short(exc)


def _short(exc: object) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
