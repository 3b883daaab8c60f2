"""The demo campaign generator: deterministic, realistic enough, and exactly what it planned."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import date
from itertools import permutations
from pathlib import Path

import pytest
from raccrochage_reperage.domain import siei
from raccrochage_reperage.domain.demo import NOMS, PRENOMS, DemoFiles, generate, respellings
from raccrochage_reperage.domain.partners import (
    PartnerEnrolment,
    PartnerIndex,
    PartnerSource,
    open_partner_file,
)
from raccrochage_reperage.domain.rules import CampaignTally, Policy, classify, normalise_name
from raccrochage_reperage.domain.siei import Rejection, SieiRow, open_siei
from raccrochage_reperage.domain.territory import ACADEMIE_DEPARTEMENTS, route

AS_OF = date(2026, 11, 2)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _replay(
    files: DemoFiles, policy: Policy | None = None
) -> tuple[CampaignTally, list[tuple[SieiRow, object]]]:
    policy = policy or Policy()
    enrolled: list[PartnerEnrolment] = []
    for source, path in files.partners.items():
        with path.open("rb") as handle:
            records = list(open_partner_file(handle).records)
        assert sum(isinstance(r, Rejection) for r in records) == files.partner_rejected[source]
        assert len(records) == files.partner_rows[source]
        enrolled += [r for r in records if isinstance(r, PartnerEnrolment)]
    index = PartnerIndex.from_enrolments(enrolled, files.as_of)
    tally = CampaignTally()
    with files.siei.open("rb") as handle:
        youths = list(classify(open_siei(handle, files.as_of).records, files.as_of, policy, index, tally))
    return tally, youths


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(4000, 7, tmp_path_factory.mktemp("demo"), campaign="siei-2026-11", as_of=AS_OF)


def test_files_written(demo: DemoFiles) -> None:
    assert demo.siei.name == "siei_siei-2026-11.csv"
    assert {p.name for p in demo.partners.values()} == {f"partner_{s.value}.csv" for s in PartnerSource}
    assert all(p.exists() for p in [demo.siei, *demo.partners.values()])
    assert "4000 rows" in str(demo)


def test_the_classification_is_exactly_the_plan(demo: DemoFiles) -> None:
    tally, _ = _replay(demo)
    assert tally.as_dict() == demo.planned.as_dict()
    assert tally.balanced and demo.planned.rows == 4000


@pytest.mark.parametrize("policy", [Policy(min_age=17, max_age=21), Policy(qualifying=frozenset())])
def test_the_plan_follows_the_policy(tmp_path: Path, policy: Policy) -> None:
    files = generate(1500, 3, tmp_path, as_of=date(2025, 3, 1), policy=policy)
    tally, _ = _replay(files, policy)
    assert tally.as_dict() == files.planned.as_dict()


def test_shares_are_realistic(demo: DemoFiles) -> None:
    plan = demo.planned
    assert 0.02 <= plan.rejected / plan.rows <= 0.045
    assert 0.005 <= plan.duplicates / plan.rows <= 0.02
    assert 0.10 <= plan.excluded_by_reason["found_in_partner_base"] / plan.rows <= 0.20
    assert 0.25 <= plan.excluded_by_reason["qualified"] / plan.rows <= 0.45
    assert plan.identified > 0 and plan.excluded_by_reason["out_of_age_band"] > 0


def test_every_kind_of_fault_is_there(demo: DemoFiles) -> None:
    with demo.siei.open("rb") as handle:
        faults = {(r.field, r.reason) for r in open_siei(handle, AS_OF).records if isinstance(r, Rejection)}
    assert faults == {
        ("ine", "missing"),
        ("nom", "missing"),
        ("prenom", "missing"),
        ("date_naissance", "missing"),
        ("date_sortie", "missing"),
        ("code_postal", "missing"),
        ("ine", "invalid INE"),
        ("date_naissance", "invalid date"),
        ("code_postal", "invalid postcode"),
        ("diplome", "unknown diploma code"),
        ("date_sortie", "date_sortie after the reference date"),
        ("*", "wrong number of fields"),
    }


def test_youths_look_like_the_academie(demo: DemoFiles) -> None:
    _, youths = _replay(demo)
    rows = [row for row, _ in youths]
    assert all(re.fullmatch(r"\d{10}[A-Z]", row.ine) for row in rows)
    departements = Counter(route(row.code_postal).departement for row in rows)
    assert set(ACADEMIE_DEPARTEMENTS) <= set(departements)
    assert sum(departements[d] for d in ACADEMIE_DEPARTEMENTS) / len(rows) > 0.95
    assert any(route(row.code_postal).zap is None for row in rows)
    assert all(row.telephone.startswith("06 00 ") for row in rows if row.telephone)
    assert all(row.courriel.endswith("@example.org") for row in rows if row.courriel)
    assert all(re.fullmatch(r"\d{7}[A-Z]", row.uai_origine) for row in rows if row.uai_origine)
    assert all(
        row.uai_origine[7] == "ABCDEFGHJKLMNPRSTUVWXYZ"[int(row.uai_origine[:7]) % 23]
        for row in rows
        if row.uai_origine
    )
    ages = Counter((AS_OF - row.date_naissance).days // 365 for row in rows)
    assert min(ages) <= 15 and max(ages) >= 26


def test_some_youths_are_found_by_identity_under_another_spelling(demo: DemoFiles) -> None:
    _, youths = _replay(demo)
    by_name = {normalise_name(row.nom) for row, reason in youths if reason == "found_in_partner_base"}
    spelled_otherwise = 0
    for path in demo.partners.values():
        with path.open("rb") as handle:
            for record in open_partner_file(handle).records:
                if (
                    isinstance(record, PartnerEnrolment)
                    and record.ine is None
                    and normalise_name(record.nom) in by_name
                ):
                    spelled_otherwise += 1
    assert spelled_otherwise > 20


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    first = generate(800, 11, tmp_path / "a")
    again = generate(800, 11, tmp_path / "b")
    generate(800, 12, tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert first.planned == again.planned


def test_small_files(tmp_path: Path) -> None:
    files = generate(0, 1, tmp_path)
    tally, youths = _replay(files)
    assert tally.rows == 0 and youths == []
    files = generate(30, 1, tmp_path)
    assert _replay(files)[0].as_dict() == files.planned.as_dict()


def test_a_campaign_name_must_be_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="campaign"):
        generate(10, 1, tmp_path, campaign="../elsewhere")


@pytest.mark.parametrize("name", [*NOMS, *(p for p, _ in PRENOMS), "D'Arcy-Lefèvre"])
def test_respellings_are_the_same_name(name: str) -> None:
    assert {normalise_name(spelling) for spelling in respellings(name)} == {normalise_name(name)}


def test_no_surname_reads_as_a_double_surname() -> None:
    # The plan relies on it: only youths found by identity carry a double surname.
    singles = {normalise_name(n) for n in NOMS}
    assert len(singles) == len(NOMS)
    assert not singles & {normalise_name(a) + normalise_name(b) for a, b in permutations(NOMS, 2)}


def test_the_csv_machinery_reads_the_ml_file_as_cp1252(demo: DemoFiles) -> None:
    with demo.partners[PartnerSource.ML].open("rb") as handle:
        parsed = open_partner_file(handle)
        assert (parsed.encoding, parsed.delimiter) == ("cp1252", ",")
    with demo.siei.open("rb") as handle:
        parsed_siei = open_siei(handle, AS_OF)
        assert (parsed_siei.encoding, parsed_siei.delimiter, parsed_siei.columns) == (
            "utf-8",
            ";",
            list(siei.SIEI_COLUMNS),
        )
