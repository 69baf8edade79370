"""The import rules of docs/architecture.md, read from the code itself."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offenders(package: str, allowed: tuple[str, ...], ours: tuple[str, ...],
               skip: tuple[str, ...] = (), root: pathlib.Path = ROOT) -> list[str]:
    """Imports of our own modules from `package` that start with none of `allowed`."""
    result = []
    for path in sorted((root / package).rglob("*.py")):
        rel = str(path.relative_to(root))
        if any(rel.startswith(prefix) for prefix in skip):
            continue
        for name in _imports(path):
            if name.split(".")[0] in ours and not name.startswith(allowed):
                result.append(f"{rel}: {name}")
    return result


OURS = ("server", "handlers", "workers", "db", "schema")


@pytest.mark.parametrize("package, allowed, skip", [
    ("server/platform", ("server.platform",), ()),
    ("db", ("db",), ()),
    ("server/sms", ("server.sms", "server.platform"), ()),
    ("server/services", ("server.services", "server.events", "server.realtime",
                         "server.carriers", "server.sms", "server.auth", "server.platform",
                         "server.deps", "db", "schema"), ()),
    ("handlers", ("handlers.base", "server", "schema", "db.paging"), ("handlers/routes.py",)),
])
def test_each_package_imports_only_what_the_map_allows(package: str, allowed: tuple[str, ...],
                                                      skip: tuple[str, ...]) -> None:
    assert _offenders(package, allowed, OURS, skip) == []


def test_a_forbidden_import_is_reported(tmp_path: pathlib.Path) -> None:
    # The check itself can fail: a platform module that reaches up into services.
    (tmp_path / "server" / "platform").mkdir(parents=True)
    (tmp_path / "server" / "platform" / "probe.py").write_text(
        "from server.platform import redis\nfrom server.services import consent\n")
    assert _offenders("server/platform", ("server.platform",), OURS, root=tmp_path) == [
        "server/platform/probe.py: server.services.consent"]
