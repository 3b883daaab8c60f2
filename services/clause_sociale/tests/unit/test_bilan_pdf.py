"""The bilan croisé PDF, read back with pypdf: skills with their levels, hours, signatures."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pypdf import PdfReader
from raccrochage_clause_sociale.adapters.bilan_pdf import latin1, render_bilan_pdf
from raccrochage_clause_sociale.domain.document import bilan_document

from .builders import accepted, completed, drafted, new_clause, new_mission, signed, with_signed_bilan

DELIVERED = datetime(2026, 12, 21, 10, tzinfo=UTC)


def rendered(names: dict[str, str] | None = None) -> bytes:
    clause = new_clause(250_000)
    mission = with_signed_bilan(completed(signed(drafted(accepted(new_mission(clause))))))
    other = new_mission(clause, name="other", hours=300)
    return render_bilan_pdf(bilan_document(clause, mission, clause.proof([mission, other]), names), DELIVERED)


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_says_the_skills_the_hours_and_the_signatures() -> None:
    pdf = rendered({"company": "Batisud SAS", "youth": "Y. Martin"})
    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    for expected in (
        "Bilan croisé - clause sociale de formation",
        "Bordeaux Métropole",
        "Batisud SAS",
        "Y. Martin",
        "Logistique",
        "Bordeaux (33)",
        "du 02/11/2026 au 18/12/2026",
        # skills, each with its level
        "Réceptionner une livraison",
        "Tenir un inventaire",
        "Utiliser un transpalette",
        "Renseigner le logiciel de stock",
        "Acquis",
        "En cours d'acquisition",
        "Non acquis",
        # savoir-être, savoir-faire, next steps, outcome
        "Ponctuel et poli.",
        "Sait préparer une commande.",
        "Entrée en CAP logistique.",
        "Contrat d'apprentissage",
        # hours: the mission's, the weeks', the clause's
        "Heures de la mission",
        "150 h",
        "58 h",
        "semaine du 02/11/2026",
        "28 h",
        "semaine du 09/11/2026",
        "30 h",
        "Heures requises",
        "450 h",
        # signatures, each with its role and time
        "Tuteur pédagogique (MLDS)",
        "Référent de l'entreprise",
        "Le jeune",
        "signé le 19/12/2026 à 11:00 (UTC)",
    ):
        assert expected in text, expected
    assert text.count("signé le") == 3
    skills = [line for line in text.splitlines() if "transpalette" in line]
    assert skills and "En cours d'acquisition" in skills[0]


def test_the_same_bilan_renders_to_the_same_bytes() -> None:
    """The hash in clause.bilan.delivered.v1 names one document."""
    assert rendered() == rendered()


def test_the_parties_are_named_by_reference_without_names() -> None:
    text = text_of(rendered())
    assert "batisud-33" in text and "p-youth" in text


def test_signs_outside_latin1_are_written_plainly() -> None:
    assert latin1("l’œuvre – 10 €") == "l'oeuvre - 10 EUR"
    assert latin1("中") == "?"
