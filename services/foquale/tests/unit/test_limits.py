"""A partner's flood limits: its rate (records applied per second) and its backlog."""

from pathlib import Path

import pytest
from raccrochage_foquale.adapters.partners import partner_limits
from raccrochage_foquale.domain.limits import PartnerLimits, RecordRate


def takes(rate: RecordRate, *elapsed: float) -> tuple[RecordRate, list[float]]:
    waits = []
    for seconds in elapsed:
        rate, wait = rate.take(seconds)
        waits.append(wait)
    return rate, waits


def test_the_rate_lets_a_burst_of_one_second_then_spaces_the_records() -> None:
    _, waits = takes(RecordRate.full(10), *[0.0] * 12)
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.2])


def test_a_record_waiting_its_turn_leaves_the_next_one_a_turn_later() -> None:
    rate, waits = takes(RecordRate.full(4), *[0.0] * 5)
    assert waits[-1] == pytest.approx(0.25)
    rate, [wait] = takes(rate, waits[-1])
    assert wait == pytest.approx(0.25)  # the next turn, a quarter of a second on
    assert takes(rate, 10.0)[1] == [0.0]  # after a quiet while, a burst again


def test_the_backlog_refusal_names_the_limit_and_where_it_is_set() -> None:
    limits = PartnerLimits(records_per_second=5, max_backlog=100)
    assert not limits.over_backlog(100)
    assert limits.over_backlog(101)
    reason = limits.backlog_refusal("cfa-a", 250)
    assert "250" in reason and "backlog limit of 100" in reason
    assert "deploy/partners.toml" in reason and "partners.cfa-a.max_backlog" in reason
    assert len(limits.backlog_refusal("x" * 63, 10**9)) <= 300


@pytest.mark.parametrize(
    "values", [{"records_per_second": 0, "max_backlog": 1}, {"records_per_second": 1, "max_backlog": 0}]
)
def test_limits_must_let_something_through(values: dict) -> None:
    with pytest.raises(ValueError):
        PartnerLimits(**values)


def test_each_partner_has_its_own_limits_else_the_files(tmp_path: Path) -> None:
    path = tmp_path / "partners.toml"
    path.write_text(
        "[limits]\nrecords_per_second = 30\nmax_backlog = 500\n\n"
        '[partners.a]\nbase = "cfa"\nrecords_per_second = 2\n\n[partners.b]\nbase = "ml"\n',
        encoding="utf-8",
    )
    assert partner_limits(path) == {
        "a": PartnerLimits(records_per_second=2, max_backlog=500),
        "b": PartnerLimits(records_per_second=30, max_backlog=500),
    }


def test_a_file_without_limits_has_the_defaults_and_a_wrong_one_names_the_partner(tmp_path: Path) -> None:
    path = tmp_path / "partners.toml"
    path.write_text('[partners.a]\nbase = "cfa"\n', encoding="utf-8")
    assert partner_limits(path)["a"] == PartnerLimits(records_per_second=50, max_backlog=1000)
    path.write_text('[partners.a]\nbase = "cfa"\nmax_backlog = 0\n', encoding="utf-8")
    with pytest.raises(ValueError, match="partners.a"):
        partner_limits(path)


def test_the_declared_partners_have_limits() -> None:
    assert partner_limits()["en-rectorat"] == PartnerLimits(records_per_second=50, max_backlog=1000)
