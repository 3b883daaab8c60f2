"""Ops' domain imports no I/O library: it stays testable without servers."""

from __future__ import annotations

import ast
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "raccrochage_ops" / "domain"
FORBIDDEN = {"sqlalchemy", "nats", "faststream", "fastapi", "httpx", "asyncpg", "prometheus_client"}


def test_domain_imports_no_framework():
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
