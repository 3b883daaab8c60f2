"""Compatibility check between two JSON Schemas of the same event version.

Within one version, producers and consumers of different ages must keep understanding each
other, so only optional fields may be added. Anything else is a breaking change and needs a new
version (`.v2`) published beside the old one. A string's bound narrowed (a maxLength added or
lowered, a minLength raised, a pattern added or changed) is reported as breaking too; it may be
accepted within a version only when no producer of that version can have sent a value outside it
(`generate --accept-bounds`, docs/contracts.md).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every way `new` breaks readers or writers of `old`; empty when `new` is compatible."""
    problems: list[str] = []
    _compare(_resolve(old, old), _resolve(new, new), old, new, "$", problems)
    return problems


def _resolve(node: Any, root: Schema) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
    return node


def _types(node: Schema, root: Schema) -> set[str]:
    """The JSON types a schema node admits, looking through anyOf/oneOf (Optional[X])."""
    if "type" in node:
        kinds = node["type"]
        return set(kinds) if isinstance(kinds, list) else {kinds}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            found |= _types(_resolve(option, root), root)
    if "enum" in node and not found:
        found |= {type(v).__name__ for v in node["enum"]}
    if "const" in node and not found:
        found.add(type(node["const"]).__name__)
    return found


def _enum(node: Schema, root: Schema) -> set[Any] | None:
    if "enum" in node:
        return {repr(v) for v in node["enum"]}
    if "const" in node:
        return {repr(node["const"])}
    values: set[Any] = set()
    saw = False
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            sub = _enum(_resolve(option, root), root)
            if sub is not None:
                saw = True
                values |= sub
            elif _resolve(option, root).get("type") == "null":
                values.add("None")
    return values if saw else None


def _object_node(node: Schema, root: Schema) -> Schema | None:
    if node.get("type") == "object" or "properties" in node:
        return node
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            resolved = _resolve(option, root)
            if resolved.get("type") == "object" or "properties" in resolved:
                return resolved
    return None


def _item_node(node: Schema, root: Schema) -> Schema | None:
    if node.get("type") == "array" and "items" in node:
        return _resolve(node["items"], root)
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            resolved = _resolve(option, root)
            if resolved.get("type") == "array" and "items" in resolved:
                return _resolve(resolved["items"], root)
    return None


# The words every narrowed bound's message holds: `generate --accept-bounds` looks for them.
BOUND_NARROWED = "bound narrowed"


def _string_node(node: Schema, root: Schema) -> Schema | None:
    if node.get("type") == "string":
        return node
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            resolved = _resolve(option, root)
            if resolved.get("type") == "string":
                return resolved
    return None


def _bounds(old: Schema, new: Schema, path: str, out: list[str]) -> None:
    """A string's value space narrowed: a longer or differently shaped value an older producer
    may have sent is refused by a newer consumer."""
    old_max, new_max = old.get("maxLength"), new.get("maxLength")
    if new_max is not None and (old_max is None or new_max < old_max):
        out.append(f"{path}: {BOUND_NARROWED}: maxLength {old_max} -> {new_max}")
    if new.get("minLength", 0) > old.get("minLength", 0):
        out.append(f"{path}: {BOUND_NARROWED}: minLength {old.get('minLength', 0)} -> {new['minLength']}")
    if new.get("pattern") is not None and new.get("pattern") != old.get("pattern"):
        out.append(f"{path}: {BOUND_NARROWED}: pattern {old.get('pattern')!r} -> {new['pattern']!r}")


def _compare(old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str, out: list[str]) -> None:
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if old_types and new_types and old_types != new_types:
        out.append(f"{path}: type changed from {sorted(old_types)} to {sorted(new_types)}")
        return
    old_string, new_string = _string_node(old, old_root), _string_node(new, new_root)
    if old_string is not None and new_string is not None:
        _bounds(old_string, new_string, path, out)
    if old.get("format") != new.get("format"):
        out.append(f"{path}: format changed from {old.get('format')!r} to {new.get('format')!r}")
    old_enum, new_enum = _enum(old, old_root), _enum(new, new_root)
    if old_enum is not None or new_enum is not None:
        if old_enum is not None and (new_enum is None or not old_enum <= new_enum):
            if new_enum is not None:
                removed = sorted(old_enum - new_enum)
                out.append(f"{path}: enum narrowed, values removed: {', '.join(removed)}")
        elif new_enum is not None and old_enum is None:
            out.append(f"{path}: now restricted to an enum")
        if old_enum is not None and new_enum is not None and new_enum - old_enum:
            added = sorted(new_enum - old_enum)
            out.append(
                f"{path}: enum widened with {', '.join(added)}: consumers of this version would "
                "reject the new values"
            )

    old_obj, new_obj = _object_node(old, old_root), _object_node(new, new_root)
    if old_obj is not None and new_obj is not None:
        old_props = old_obj.get("properties", {})
        new_props = new_obj.get("properties", {})
        old_required = set(old_obj.get("required", []))
        new_required = set(new_obj.get("required", []))
        for name in sorted(set(old_props) - set(new_props)):
            out.append(f"{path}.{name}: field removed")
        for name in sorted(new_required - old_required):
            if name in old_props:
                out.append(f"{path}.{name}: optional field made required")
            else:
                out.append(f"{path}.{name}: new required field")
        for name in sorted(set(old_props) & set(new_props)):
            _compare(
                _resolve(old_props[name], old_root),
                _resolve(new_props[name], new_root),
                old_root,
                new_root,
                f"{path}.{name}",
                out,
            )
    old_items, new_items = _item_node(old, old_root), _item_node(new, new_root)
    if old_items is not None and new_items is not None:
        _compare(old_items, new_items, old_root, new_root, f"{path}[]", out)
