"""The bilan croisé as a PDF (fpdf2): the document handed to the buyer.

The same bilan renders to the same bytes (the creation date is the delivery time), so the hash in
clause.bilan.delivered.v1 names one document. fpdf2's built-in fonts cover Latin-1, which French
needs but for a few typographic signs; those are written in their plain forms.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from ..domain.document import BilanDocument

_PLAIN = str.maketrans(
    {
        "’": "'",
        "‘": "'",
        "“": '"',
        "”": '"',
        "–": "-",
        "—": "-",
        "…": "...",
        "œ": "oe",
        "Œ": "OE",
        "\u202f": " ",
        "€": "EUR",
    }
)
FONT = "Helvetica"


def latin1(text: str) -> str:
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def _day(moment) -> str:
    return moment.strftime("%d/%m/%Y")


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-15)
        self.set_font(FONT, size=8)
        self.cell(0, 10, f"Page {self.page_no()}/{{nb}}", align="C")


def render_bilan_pdf(document: BilanDocument, created_at: datetime) -> bytes:
    pdf = _Pdf(format="A4")
    pdf.set_creation_date(created_at)
    pdf.set_title(latin1(document.title))
    pdf.set_author("raccrochage clause_sociale")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    def heading(text: str) -> None:
        pdf.ln(3)
        pdf.set_font(FONT, style="B", size=12)
        pdf.cell(0, 8, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(FONT, size=10)

    def line(label: str, value: str) -> None:
        pdf.set_font(FONT, style="B", size=10)
        pdf.cell(55, 6, latin1(label))
        pdf.set_font(FONT, size=10)
        pdf.multi_cell(0, 6, latin1(value), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def paragraph(text: str) -> None:
        pdf.multi_cell(0, 6, latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    pdf.set_font(FONT, style="B", size=16)
    pdf.multi_cell(0, 10, latin1(document.title), align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    heading("Le marché et la mission")
    line("Acheteur", document.buyer)
    line("Objet du marché", document.contract_object)
    line("Entreprise", document.company)
    line("Jeune", document.youth)
    line("Domaine d'activité", document.activity)
    line("Lieu", document.place)
    line("Période", f"du {_day(document.starts_on)} au {_day(document.ends_on)}")
    line("Tâches", "; ".join(document.tasks))

    heading("Heures")
    line("Heures de la mission", f"{document.mission_hours} h")
    line("Heures réalisées", f"{document.hours_done} h")
    for week, hours in document.hours_by_week:
        line(f"  semaine du {_day(week)}", f"{hours} h")

    heading("Compétences")
    with pdf.table(col_widths=(120, 60), text_align="LEFT", line_height=6) as table:
        table.row(["Compétence", "Niveau"])
        for skill, level in document.skills:
            table.row([latin1(skill), latin1(level)])

    heading("Savoir-être")
    paragraph(document.savoir_etre)
    heading("Savoir-faire")
    paragraph(document.savoir_faire)
    heading("Suite du parcours")
    line("Issue", document.outcome)
    paragraph(document.next_steps)

    heading("Exécution de la clause")
    line("Heures requises", f"{document.clause_hours_required} h")
    line("Heures planifiées", f"{document.clause_hours_planned} h")
    line("Heures réalisées", f"{document.clause_hours_done} h")

    heading("Signatures")
    for role, signed_at in document.signatures:
        at = signed_at.astimezone(UTC)
        line(role, f"signé le {_day(at)} à {at.strftime('%H:%M')} (UTC)")

    return bytes(pdf.output())
