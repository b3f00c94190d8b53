"""The house rules of docs/architecture.md, checked: the import-linter contracts of pyproject.toml
(layers, Dagster only in the Dagster layer, the simulator apart, no cycles), that they can fail, the
workers' public face, and the size of modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import streamforge_pipelines
from streamforge_pipelines import workers

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(streamforge_pipelines.__file__).resolve().parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
#: No module of the package is longer than this (split by role, not by arbitrary cut).
MAX_MODULE_LINES = 700

#: What the rest of StreamForge may import from ``workers`` (its ``__init__``): change it on purpose.
WORKERS_PUBLIC = {
    "BinanceRestClient",
    "LoadResult",
    "Loader",
    "TaskControl",
    "TaskInvalid",
    "TaskRun",
    "TaskStopped",
    "WeightGovernor",
    "WorkerError",
    "configure_logging",
    "connector_main",
    "first_id",
    "loader_for",
    "redact_handlers",
    "register_loader",
    "run_loader_task",
    "run_task",
    "send_end_markers",
    "serve_loader",
    "serve_streams",
    "serve_metrics",
    "settings_secrets",
    "unregister_loader",
}


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "LANG": "C.UTF-8"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("store/base.py", "import dagster  # noqa", "Dagster only in the Dagster layer"),
        ("simulator/clock.py", "from .. import settings  # noqa", "The simulator"),
        ("intervals.py", "from . import protocol  # noqa", "Layers"),
        ("kafka/health.py", "from . import io  # noqa", "No import cycles"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    """The contracts can fail: the same configuration over a copy of the package with one import
    added that the architecture forbids."""
    copy = tmp_path / "streamforge_pipelines"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout[-3000:]


def test_the_cli_starts_without_dagster() -> None:
    """Every worker, the simulator and each ``streamforge`` command start from ``cli``; importing it
    (and the workers it serves) loads no Dagster: a second less per process, and the layer rule kept
    for the processes themselves, not only for the modules the contracts name. The check: a fresh
    interpreter's ``sys.modules`` after the import (a Dagster module imported at the top of ``cli``
    shows there; one imported inside the command that needs it does not)."""
    probe = (
        "import sys, streamforge_pipelines.cli, streamforge_pipelines.workers; "
        "print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", result.stdout[-3000:]


def test_workers_public_face_is_pinned() -> None:
    assert set(workers.__all__) == WORKERS_PUBLIC
    for name in workers.__all__:
        assert hasattr(workers, name), name


def _imports_from(path: Path) -> list[tuple[str, int]]:
    """``(absolute module, line)`` of every ``from X import`` in a module of the package."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    here = parts if path.name == "__init__.py" else parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            out.append((name, node.lineno))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
    return out


def test_nothing_outside_workers_reaches_past_its_public_face() -> None:
    """Code outside ``workers/`` imports ``streamforge_pipelines.workers`` (its ``__all__``) or the
    ``workers.dummy`` room, never a worker module."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if (PACKAGE / "workers") in path.parents:
            continue
        for name, line in _imports_from(path):
            if name.startswith("streamforge_pipelines.workers.") and not name.startswith(
                "streamforge_pipelines.workers.dummy"
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert offenders == []


def test_no_module_is_too_long() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in sorted(PACKAGE.rglob("*.py"))}
    too_long = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
