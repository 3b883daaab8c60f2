"""What the dead-letter page may show: a reason kind, a payload only when harmless."""

from __future__ import annotations

from raccrochage_contracts.registry import load_all
from raccrochage_ops.domain.deadletters import PERSON_FIELDS, payload_visibility, reason_group, reason_kind


def test_reason_kinds_are_few_and_bounded():
    assert reason_kind("invalid data.age: Input should be >= 0") == "invalid data"
    assert reason_kind("handler failed: RuntimeError: boom (after 6 deliveries)") == "handler failed"
    assert reason_kind("consumer ops_psad has no handler for psad.case.x.v1") == "no handler"
    assert reason_kind("something new") == "other"


def test_a_reason_groups_without_its_delivery_count():
    assert reason_group("handler failed: X (after 6 deliveries)") == "handler failed: X"


def test_an_event_about_a_youth_never_shows_its_payload():
    visibility = payload_visibility(frozenset({"case_id", "youth_id", "reason"}), True)
    assert not visibility.shown and "youth_id" in visibility.why


def test_a_harmless_type_shows_its_payload_only_when_it_reads_strictly():
    fields = frozenset({"campaign_id", "rows"})
    assert payload_visibility(fields, True).shown
    assert not payload_visibility(fields, False).shown
    assert not payload_visibility(None, True).shown


def test_every_contract_naming_a_youth_is_withheld():
    for name, model in load_all().items():
        if "youth_id" in model.model_fields:
            assert set(model.model_fields) & PERSON_FIELDS, name
            assert not payload_visibility(frozenset(model.model_fields), True).shown, name


def test_a_list_that_left_older_dead_letters_unread_says_so_and_links_to_them():
    from raccrochage_ops.entrypoints.pages import dead_letters

    row = {"seq": 12, "service": "ops", "consumer": "ops_psad", "subject": "psad.x", "reason": "r", "at": "t"}
    shown = dead_letters([row], ["ops"], ["r"], "ops", "r", older=12)
    assert 'data-testid="truncated"' in shown and "before=12" in shown and "service=ops" in shown
    assert "Replay every one of this reason" in shown
    whole = dead_letters([row], ["ops"], ["r"], None, "r")
    assert "truncated" not in whole and "Replay all 1 of this reason" in whole
