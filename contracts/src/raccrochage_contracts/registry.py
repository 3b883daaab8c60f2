"""Registry from event type name to its payload model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from .naming import EventType
from .payload import Payload

P = TypeVar("P", bound=type[Payload])


class UnknownEventType(LookupError):
    pass


class Registry:
    def __init__(self) -> None:
        self._models: dict[str, type[Payload]] = {}

    def register(self, name: str, model: type[Payload]) -> None:
        EventType.parse(name)
        existing = self._models.get(name)
        if existing is not None and existing is not model:
            raise ValueError(f"event type {name} is already registered to {existing.__qualname__}")
        model.event_type = name
        self._models[name] = model

    def model(self, name: str) -> type[Payload]:
        try:
            return self._models[name]
        except KeyError:
            known = sorted(n for n in self._models if n.rsplit(".", 1)[0] == name.rsplit(".", 1)[0])
            hint = f"; known versions: {', '.join(known)}" if known else ""
            raise UnknownEventType(f"unknown event type {name!r}{hint}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._models))

    def items(self) -> list[tuple[str, type[Payload]]]:
        return sorted(self._models.items())


REGISTRY = Registry()


def event_type(name: str, registry: Registry = REGISTRY) -> Callable[[P], P]:
    """Class decorator: `@event_type("psad.case.opened.v1")` registers the payload model."""

    def decorate(model: P) -> P:
        registry.register(name, model)
        return model

    return decorate


def load_all() -> Registry:
    """Import every contracts module so that the global registry is complete."""
    from . import events  # noqa: F401  (importing registers)

    return REGISTRY
