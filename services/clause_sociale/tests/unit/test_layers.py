"""The domain is plain Python: it imports no framework, driver or renderer."""

from __future__ import annotations

import ast
from pathlib import Path

import raccrochage_clause_sociale.domain as domain

FORBIDDEN = ("faststream", "sqlalchemy", "nats", "fastapi", "asyncpg", "fpdf", "raccrochage_platform")


def test_the_domain_imports_no_io() -> None:
    imported = []
    for path in Path(domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.append((path.name, node.module))
    assert [(f, m) for f, m in imported if m.split(".")[0] in FORBIDDEN] == []
