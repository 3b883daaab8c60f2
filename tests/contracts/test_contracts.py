"""Contracts: schemas committed and in sync, compatible within a version, examples valid, catalogued."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

import pytest
from pydantic import Field, ValidationError
from raccrochage_contracts import (
    CloudEvent,
    EventType,
    Payload,
    Registry,
    event_type,
    nats_subject,
    new_event,
    typed_envelope,
)
from raccrochage_contracts.catalog import EXAMPLES_DIR, CatalogEntry, catalog_problems, load_catalog
from raccrochage_contracts.compat import breaking_changes
from raccrochage_contracts.generate import drift, payload_schema
from raccrochage_contracts.naming import InvalidEventType, type_from_subject
from raccrochage_contracts.registry import load_all

REGISTRY = load_all()
CATALOG = load_catalog()


def test_committed_schemas_and_asyncapi_match_the_models() -> None:
    stale, breaking = drift(REGISTRY, CATALOG)
    assert breaking == [], "breaking changes to published versions: publish a new .vN instead"
    assert stale == [], "run `make contracts` and commit the result"


def test_every_event_type_is_catalogued() -> None:
    assert catalog_problems(REGISTRY, CATALOG) == []


def test_a_type_without_catalog_entry_is_reported() -> None:
    registry = Registry()

    @event_type("psad.case.opened.v1", registry=registry)
    class Opened(Payload):
        case_id: str

    assert catalog_problems(registry, {}) == [
        "psad.case.opened.v1: no catalog entry in contracts/catalog.toml (producer, consumers)"
    ]
    entry = CatalogEntry("psad.case.opened.v1", "psad", ("nobody",))
    assert catalog_problems(registry, {"psad.case.opened.v1": entry}) == [
        "psad.case.opened.v1: unknown service 'nobody' in catalog"
    ]


def _examples() -> list:
    return sorted(EXAMPLES_DIR.glob("*/*.json"))


@pytest.mark.parametrize("path", _examples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_examples_validate_strictly(path) -> None:
    envelope = CloudEvent.model_validate_json(path.read_bytes())
    assert envelope.type == path.parent.name
    REGISTRY.model(envelope.type).model_validate(envelope.data)  # strict, as a producer


def _patterns(schema: object) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        return own + [p for value in schema.values() for p in _patterns(value)]
    if isinstance(schema, list):
        return [p for value in schema for p in _patterns(value)]
    return []


def test_no_pattern_uses_backslash_d() -> None:
    """pydantic reads `\\d` as any Unicode digit, a JSON Schema reader as [0-9]: the two sides of
    a contract would disagree (a département in Arabic-Indic digits passed the model)."""
    offending = {
        name: p for name in REGISTRY for p in _patterns(payload_schema(name, REGISTRY)) if "\\d" in p
    }
    assert offending == {}


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("reperage.youth.identified.v1", "departement"),
        ("reperage.youth.identified.v1", "uai_origine"),
        ("foquale.placement.confirmed.v1", "uai"),
        ("mlds.enrolment.accepted.v1", "structure_uai"),
        ("mlds.enrolment.accepted.v1", "dispositif_id"),
        ("mlds.dispositif.updated.v1", "departement"),
        ("mlds.dispositif.updated.v1", "dispositif_id"),
        ("mlds.enrolment.exited.v1", "departement"),
        ("clause.convention.signed.v1", "mlds_structure_uai"),
        ("clause.clause.published.v1", "departement"),
    ],
)
def test_codes_written_in_other_digits_are_refused(event_type: str, field: str) -> None:
    examples = sorted((EXAMPLES_DIR / event_type).glob("*.json"))
    data = next(d for d in (json.loads(p.read_bytes())["data"] for p in examples) if field in d)
    assert any(c.isdigit() for c in data[field])
    data[field] = data[field].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    with pytest.raises(ValidationError, match=field):
        REGISTRY.model(event_type).read(data)


def _strings(schema: object, defs: dict, path: str = "$") -> list[tuple[str, dict]]:
    """Every string-typed node of a JSON Schema, with its path (references followed)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _strings(defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
        found = [(path, schema)] if schema.get("type") == "string" else []
        for key, value in schema.items():
            if key == "properties":
                found += [p for name, sub in value.items() for p in _strings(sub, defs, f"{path}.{name}")]
            elif key in ("items", "anyOf", "allOf", "oneOf"):
                found += _strings(value, defs, f"{path}[]" if key == "items" else path)
        return found
    if isinstance(schema, list):
        return [p for value in schema for p in _strings(value, defs, path)]
    return []


CLAUSE_TYPES = [name for name in REGISTRY if name.startswith("clause.")]


def _unbounded(schema: dict) -> list[str]:
    return [
        path
        for path, node in _strings(schema, schema.get("$defs", {}))
        if not (
            "maxLength" in node
            or "enum" in node
            or "const" in node
            or node.get("format") in ("date", "date-time", "uuid")
        )
    ]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_string_of_an_event_is_bounded(name: str) -> None:
    """A string field is bounded by a length (with a pattern where its format is known), a closed
    list or a format: a producer cannot ship a 100,000-character ZAP or a free-text essay."""
    assert _unbounded(payload_schema(name, REGISTRY)) == []


def test_every_string_of_the_envelope_is_bounded() -> None:
    assert _unbounded(CloudEvent.model_json_schema()) == []


KNOWN_FORMATS = {
    "zap": r"^[a-z0-9][a-z0-9-]{0,79}$",
    "departement": r"^([0-9]{2}|2A|2B|9[78][0-9])$",
    "psad_id": r"^psad-[0-9a-z-]+$",
    "to_psad_id": r"^psad-[0-9a-z-]+$",
    "youth_id": r"^[0-9a-f]{64}$",
    "uai": r"^[0-9]{7}[A-Z]$",
    "uai_origine": r"^[0-9]{7}[A-Z]$",
}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_fields_of_a_known_format_carry_its_pattern(name: str) -> None:
    schema = payload_schema(name, REGISTRY)
    wrong = [
        (path, node.get("pattern"))
        for path, node in _strings(schema, schema.get("$defs", {}))
        if path.rsplit(".", 1)[-1] in KNOWN_FORMATS
        and node.get("pattern") != KNOWN_FORMATS[path.rsplit(".", 1)[-1]]
    ]
    assert wrong == []


PSAD_FIELDS = [
    (name, field)
    for name in REGISTRY
    for field in ("psad_id", "to_psad_id")
    if field in REGISTRY.model(name).model_fields
]


@pytest.mark.parametrize(("name", "field"), PSAD_FIELDS)
def test_a_psad_id_outside_the_known_psads_is_refused(name: str, field: str) -> None:
    example = json.loads(next((EXAMPLES_DIR / name).glob("*.json")).read_text(encoding="utf-8"))["data"]
    model = REGISTRY.model(name)
    assert model.read({**example, field: "psad-33-bordeaux-centre"})
    with pytest.raises(ValidationError, match="known PSADs"):
        model.read({**example, field: "psad-75-nowhere"})


PERSONAL_WORDS = ("name", "nom", "ine", "phone", "mail", "address", "adresse", "birth", "naissance")


@pytest.mark.parametrize("name", CLAUSE_TYPES)
def test_no_clause_event_carries_a_youth_identity(name: str) -> None:
    schema = payload_schema(name, REGISTRY)
    fields = [path.rsplit(".", 1)[-1] for path, _ in _strings(schema, schema.get("$defs", {}))]
    fields += list(schema["properties"])
    assert [f for f in fields if any(word in f.split("_") for word in PERSONAL_WORDS)] == []


def test_every_event_type_has_an_example() -> None:
    with_examples = {p.parent.name for p in _examples()}
    assert sorted(set(REGISTRY) - with_examples) == []


# --- the compatibility check, on crafted changes -------------------------------------------------


class Level(StrEnum):
    CAP = "CAP"
    BAC = "BAC"
    DNB = "DNB"


class NarrowLevel(StrEnum):
    CAP = "CAP"
    BAC = "BAC"


def schema_of(model: type[Payload]) -> dict:
    registry = Registry()
    registry.register("psad.case.opened.v1", model)
    return payload_schema("psad.case.opened.v1", registry)


class Base(Payload):
    case_id: str
    age: int
    level: Level
    note: str | None = None


class AddsOptional(Base):
    territory: str | None = None


class RemovesField(Payload):
    case_id: str
    level: Level
    note: str | None = None


class ChangesType(Payload):
    case_id: str
    age: str
    level: Level
    note: str | None = None


class AddsRequired(Base):
    territory: str


class NarrowsEnum(Payload):
    case_id: str
    age: int
    level: NarrowLevel
    note: str | None = None


class MakesRequired(Payload):
    case_id: str
    age: int
    level: Level
    note: str


def test_adding_an_optional_field_is_compatible() -> None:
    assert breaking_changes(schema_of(Base), schema_of(AddsOptional)) == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (RemovesField, "$.age: field removed"),
        (ChangesType, "$.age: type changed from ['integer'] to ['string']"),
        (AddsRequired, "$.territory: new required field"),
        (NarrowsEnum, "$.level: enum narrowed, values removed: 'DNB'"),
        (MakesRequired, "$.note: optional field made required"),
    ],
)
def test_breaking_changes_are_rejected(model: type[Payload], expected: str) -> None:
    problems = breaking_changes(schema_of(Base), schema_of(model))
    assert expected in problems


def test_a_narrowed_string_bound_is_reported() -> None:
    class Free(Payload):
        zap: str | None = None
        code: str

    class Bounded(Payload):
        zap: str | None = Field(None, max_length=80)
        code: str = Field(pattern=r"^[a-z]+$", max_length=10)

    class Shorter(Payload):
        zap: str | None = Field(None, max_length=40)
        code: str = Field(pattern=r"^[a-z]+$", max_length=10)

    assert breaking_changes(schema_of(Free), schema_of(Bounded)) == [
        "$.code: bound narrowed: maxLength None -> 10",
        "$.code: bound narrowed: pattern None -> '^[a-z]+$'",
        "$.zap: bound narrowed: maxLength None -> 80",
    ]
    assert breaking_changes(schema_of(Bounded), schema_of(Shorter)) == [
        "$.zap: bound narrowed: maxLength 80 -> 40"
    ]
    assert breaking_changes(schema_of(Bounded), schema_of(Free)) == []  # widened: old values fit


def test_widening_an_enum_is_reported_too() -> None:
    problems = breaking_changes(schema_of(NarrowsEnum), schema_of(Base))
    assert any("enum widened" in p for p in problems)


def test_nested_models_are_compared() -> None:
    class Wish(Payload):
        kind: Literal["school", "job"]

    class WishNarrow(Payload):
        kind: Literal["school"]

    class Old(Payload):
        wishes: list[Wish]

    class New(Payload):
        wishes: list[WishNarrow]

    assert breaking_changes(schema_of(Old), schema_of(New)) == [
        "$.wishes[].kind: enum narrowed, values removed: 'job'"
    ]


# --- envelope, naming, strict and tolerant reading -----------------------------------------------


class Sample(Payload):
    case_id: str


def test_envelope_round_trip_and_ids() -> None:
    registry = Registry()
    registry.register("psad.case.opened.v1", Sample)
    cause = new_event(Sample(case_id="c1"), source="raccrochage/reperage", subject="c1")
    effect = new_event(
        Sample(case_id="c1"),
        source="raccrochage/psad",
        subject="c1",
        correlationid=cause.correlationid,
        causationid=cause.id,
    )
    parsed = CloudEvent.from_json(effect.to_json())
    assert parsed.correlationid == cause.id and parsed.causationid == cause.id
    assert parsed.dataschema.endswith("/psad.case.opened.v1.json")
    assert json.loads(effect.to_json())["specversion"] == "1.0"


def test_producers_are_strict_consumers_tolerant() -> None:
    with pytest.raises(ValidationError):
        Sample.model_validate({"case_id": "c1", "added_later": 1})
    assert Sample.read({"case_id": "c1", "added_later": 1}) == Sample(case_id="c1")
    with pytest.raises(ValidationError):
        Sample.read({"added_later": 1})


def test_a_typed_envelope_reads_envelope_and_payload_in_one_pass_as_tolerantly() -> None:
    event = new_event(Sample(case_id="c1"), source="raccrochage/reperage", subject="c1")
    raw = json.loads(event.to_json())
    raw["data"]["added_later"] = 1
    reader = typed_envelope(Sample)
    assert reader is typed_envelope(Sample)  # built once per model
    read = reader.model_validate_json(json.dumps(raw), extra="ignore")
    assert read.data == Sample(case_id="c1") and read.id == event.id and isinstance(read, CloudEvent)
    raw["data"] = {"added_later": 1}
    with pytest.raises(ValidationError) as error:
        reader.model_validate_json(json.dumps(raw), extra="ignore")
    assert [problem["loc"] for problem in error.value.errors()] == [("data", "case_id")]


@pytest.mark.parametrize(
    "name",
    [
        "psad.case.opened",
        "psad.case.opened.v0",
        "Psad.case.opened.v1",
        "psad.case.v1",
        "psad.case.opened.v1.extra",
    ],
)
def test_naming_rule(name: str) -> None:
    with pytest.raises(InvalidEventType):
        EventType.parse(name)


def test_partner_subjects_carry_the_partner() -> None:
    assert nats_subject("psad.case.opened.v1") == "psad.case.opened.v1"
    assert nats_subject("partner.enrolment.started.v1", "cfa-33") == "partner.cfa-33.enrolment.started.v1"
    assert type_from_subject("partner.cfa-33.enrolment.started.v1") == (
        "partner.enrolment.started.v1",
        "cfa-33",
    )
    with pytest.raises(InvalidEventType):
        nats_subject("partner.enrolment.started.v1", "CFA *")


@pytest.mark.parametrize("name", ["psad.case.opened", "Psad.case.opened.v1", "psad.case.opened.v0"])
def test_an_envelope_whose_type_breaks_the_naming_rule_is_refused(name: str) -> None:
    raw = json.loads(new_event(Sample(case_id="c1"), source="raccrochage/psad", subject="c1").to_json())
    raw["type"] = name
    with pytest.raises(ValidationError) as error:
        CloudEvent.from_json(json.dumps(raw))
    assert [problem["loc"] for problem in error.value.errors()] == [("type",)]


# --- FOQUALE seats from partners -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "partner.seats.published.v1",
        "partner.seats.updated.v1",
        "partner.seats.confirmed.v1",
        "partner.seats.closed.v1",
        "partner.seats.feedback.v1",
    ],
)
def test_partner_seat_records_and_their_feedback_travel_under_the_partner(name: str) -> None:
    """They match the PARTNER stream's `partner.*.seats.>` (deploy/topology.toml), whose replay
    gives a partner its last feedback messages."""
    subject = nats_subject(name, "cfa-gironde")
    assert subject == name.replace("partner.", "partner.cfa-gironde.", 1)
    parts = subject.split(".")
    assert parts[0] == "partner" and parts[2] == "seats"
    assert type_from_subject(subject) == (name, "cfa-gironde")


def test_a_partner_seat_closing_before_it_opens_is_refused() -> None:
    path = EXAMPLES_DIR / "partner.seats.published.v1" / "cap_in_apprenticeship.json"
    data = json.loads(path.read_bytes())["data"]
    data["closes_on"] = "2026-12-31"
    with pytest.raises(ValidationError, match="closes_on is before opens_on"):
        REGISTRY.model("partner.seats.published.v1").model_validate(data)


# --- MLDS: places add up, decisions carry rule codes and fact names, never fact values ----------


def test_mlds_places_taken_and_left_must_add_up_to_the_capacity() -> None:
    path = next((EXAMPLES_DIR / "mlds.dispositif.updated.v1").glob("*.json"))
    data = json.loads(path.read_bytes())["data"]
    data["places_left"] += 1
    with pytest.raises(ValidationError, match="must equal capacity"):
        REGISTRY.model("mlds.dispositif.updated.v1").model_validate(data)


def test_mlds_decision_rules_name_their_facts_without_values() -> None:
    schema = payload_schema("mlds.candidacy.decided.v1", REGISTRY)
    rule = schema["$defs"]["RuleResult"]["properties"]
    assert set(rule) == {"code", "outcome", "facts", "missing_facts", "applies_from"}
    assert rule["facts"]["items"]["pattern"] == "^[a-z][a-z0-9_]{0,39}$"
