"""The domain imports no I/O library: it is tested, and read, without a database or a broker."""

import ast
from pathlib import Path

import raccrochage_foquale.domain as domain

FORBIDDEN = ("sqlalchemy", "asyncpg", "nats", "faststream", "fastapi", "raccrochage_platform")


def test_domain_modules_import_no_io_library() -> None:
    offending = []
    for path in Path(domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offending += [f"{path.name}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]
    assert offending == []
