"""No log call of any service names a youth: an erasure cannot reach a log store, so a log line
says which case, event or request it is about, never which youth_id (docs/privacy.md). Read from
the source, so that a new `log.info(..., youth_id=...)` fails here before any log is written."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "bind"}


def _log_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger"}
        ):
            yield node


def test_no_log_call_of_a_service_is_given_a_youth() -> None:
    sources = sorted(ROOT.glob("services/*/src/**/*.py"))
    assert sources
    found = []
    for path in sources:
        for call in _log_calls(ast.parse(path.read_text(encoding="utf-8"))):
            given = [keyword.arg or "" for keyword in call.keywords] + [
                ast.unparse(value) for value in (*call.args[1:], *(k.value for k in call.keywords))
            ]
            if any("youth" in text for text in given):
                found.append(f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(call)[:120]}")
    assert found == []
