"""`make contracts`: write the JSON Schemas and AsyncAPI documents generated from the models.

Refuses to overwrite a committed schema with a breaking change: that change needs a new version.
`--check` writes nothing and exits 1 when anything committed differs from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .catalog import ASYNCAPI_DIR, SCHEMAS_DIR, SERVICES, CatalogEntry, load_catalog
from .compat import BOUND_NARROWED, breaking_changes
from .envelope import CloudEvent, schema_uri
from .registry import Registry, load_all


def payload_schema(name: str, registry: Registry) -> dict[str, Any]:
    schema = registry.model(name).model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_uri(name), **schema}


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def asyncapi_document(service: str, registry: Registry, catalog: dict[str, CatalogEntry]) -> dict[str, Any]:
    """AsyncAPI 3.0 description of what one service sends and receives."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    envelope = CloudEvent.model_json_schema()
    for name in registry:
        entry = catalog.get(name)
        if entry is None:
            continue
        sends = service in entry.producers
        receives = service in entry.consumers
        if not (sends or receives):
            continue
        key = name.replace(".", "_")
        address = (
            name if not name.startswith("partner.") else name.replace("partner.", "partner.{partner_id}.", 1)
        )
        messages[key] = {
            "name": name,
            "contentType": "application/cloudevents+json",
            "summary": entry.description,
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {"type": "object", "properties": {"data": payload_schema(name, registry)}},
                ]
            },
        }
        channels[key] = {"address": address, "messages": {key: {"$ref": f"#/components/messages/{key}"}}}
        if address != name:
            channels[key]["parameters"] = {"partner_id": {"description": "the partner, from its credentials"}}
        action = "send" if sends else "receive"
        operations[f"{action}_{key}"] = {"action": action, "channel": {"$ref": f"#/channels/{key}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"raccrochage {service}", "version": "1.0.0"},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": {"CloudEvent": envelope}, "messages": messages},
    }


def expected_files(registry: Registry, catalog: dict[str, CatalogEntry]) -> dict[Path, str]:
    files = {SCHEMAS_DIR / f"{name}.json": dumps(payload_schema(name, registry)) for name in registry}
    for service in SERVICES:
        files[ASYNCAPI_DIR / f"{service}.json"] = dumps(asyncapi_document(service, registry, catalog))
    return files


def drift(registry: Registry, catalog: dict[str, CatalogEntry]) -> tuple[list[str], list[str]]:
    """(files that differ from the models, breaking changes to committed schemas)."""
    stale: list[str] = []
    breaking: list[str] = []
    expected = expected_files(registry, catalog)
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(path.relative_to(path.parents[1])))
        if current is not None and path.parent == SCHEMAS_DIR:
            for problem in breaking_changes(json.loads(current), json.loads(text)):
                breaking.append(f"{path.stem}: {problem}")
    for path in sorted(SCHEMAS_DIR.glob("*.json")):
        if path not in expected:
            breaking.append(f"{path.stem}: a published version has no model any more")
    return stale, breaking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing, exit 1 on drift")
    parser.add_argument(
        "--accept-bounds",
        action="store_true",
        help="accept narrowed string bounds within a version: only when no producer of that version "
        "can have sent a value outside them (say why in docs/contracts.md)",
    )
    args = parser.parse_args(argv)
    registry, catalog = load_all(), load_catalog()
    stale, breaking = drift(registry, catalog)
    if args.accept_bounds:
        accepted = [line for line in breaking if BOUND_NARROWED in line]
        for line in accepted:
            print(f"accepted: {line}", file=sys.stderr)
        breaking = [line for line in breaking if BOUND_NARROWED not in line]
    if breaking:
        print("breaking changes to published event versions (publish a new .vN instead):", file=sys.stderr)
        for line in breaking:
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.check:
        for line in stale:
            print(f"out of date: {line} (run `make contracts`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected_files(registry, catalog).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(path.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
