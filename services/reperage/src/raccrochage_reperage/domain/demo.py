"""Synthetic SIEI campaigns and partner files for the académie's five départements, for demos and load tests."""

from __future__ import annotations

import csv
import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from .partners import PartnerSource
from .rules import CampaignTally, Diploma, ExclusionReason, Policy, age_on
from .siei import (
    INVALID_DATE,
    INVALID_INE,
    INVALID_POSTCODE,
    MISSING,
    SIEI_COLUMNS,
    SORTIE_AFTER_AS_OF,
    UNKNOWN_DIPLOMA,
    WRONG_FIELD_COUNT,
)
from .territory import zap_communes

NOMS = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Nguyen",
    "Boyer",
    "Lemaire",
    "Joly",
    "D'Arcy",
    "D'Abbadie",
    "N'Diaye",
    "Le Goff",
    "Le Gall",
    "Saint-Martin",
    "Dupré",
    "Béranger",
    "Bégué",
    "Ducasse",
    "Hourcade",
    "Laborde",
    "Etcheverry",
    "Etchegaray",
    "Lacoste",
    "Lasserre",
    "Labat",
    "Lafargue",
    "Larrieu",
    "Cazenave",
    "Lagarde",
    "Lalanne",
    "Barthe",
    "Castaing",
    "Iribarne",
    "Elissalde",
    "Harriet",
    "Mendiboure",
    "Pédeboscq",
    "Lahitte",
    "Ospital",
    "Darrigrand",
)
PRENOMS = (
    ("Emma", "F"),
    ("Léa", "F"),
    ("Chloé", "F"),
    ("Manon", "F"),
    ("Inès", "F"),
    ("Camille", "F"),
    ("Sarah", "F"),
    ("Jade", "F"),
    ("Louise", "F"),
    ("Zoé", "F"),
    ("Lina", "F"),
    ("Éloïse", "F"),
    ("Anaïs", "F"),
    ("Maëlys", "F"),
    ("Océane", "F"),
    ("Clémence", "F"),
    ("Noémie", "F"),
    ("Héloïse", "F"),
    ("Maëlle", "F"),
    ("Marie-Ève", "F"),
    ("Anne-Sophie", "F"),
    ("Marie-Lou", "F"),
    ("Lucie", "F"),
    ("Julie", "F"),
    ("Yasmine", "F"),
    ("Aïcha", "F"),
    ("Fatoumata", "F"),
    ("Maïwenn", "F"),
    ("Solène", "F"),
    ("Gwenaëlle", "F"),
    ("Amélie", "F"),
    ("Céline", "F"),
    ("Maïa", "F"),
    ("Nahia", "F"),
    ("Ainhoa", "F"),
    ("Lou-Anne", "F"),
    ("Eléa", "F"),
    ("Romane", "F"),
    ("Agathe", "F"),
    ("Cléa", "F"),
    ("Lucas", "M"),
    ("Hugo", "M"),
    ("Louis", "M"),
    ("Nathan", "M"),
    ("Gabriel", "M"),
    ("Jules", "M"),
    ("Enzo", "M"),
    ("Théo", "M"),
    ("Mathéo", "M"),
    ("Raphaël", "M"),
    ("Arthur", "M"),
    ("Noé", "M"),
    ("Léo", "M"),
    ("Tom", "M"),
    ("Ethan", "M"),
    ("Timéo", "M"),
    ("Maël", "M"),
    ("Axel", "M"),
    ("Baptiste", "M"),
    ("Maxime", "M"),
    ("Kévin", "M"),
    ("Jérémy", "M"),
    ("Jean-Pierre", "M"),
    ("Jean-Baptiste", "M"),
    ("Pierre-Louis", "M"),
    ("Loïc", "M"),
    ("Dylan", "M"),
    ("Yanis", "M"),
    ("Rayan", "M"),
    ("Mohamed", "M"),
    ("Ibrahim", "M"),
    ("Florian", "M"),
    ("Thibault", "M"),
    ("Benoît", "M"),
    ("Joël", "M"),
    ("Aurélien", "M"),
    ("Jérôme", "M"),
    ("Iñaki", "M"),
    ("Peio", "M"),
    ("Xabi", "M"),
    ("Ander", "M"),
)
STREETS = (
    "rue Victor Hugo",
    "avenue Jean Jaurès",
    "allée des Pins",
    "place de la République",
    "chemin de l'Église",
    "rue du 8 Mai 1945",
    "impasse des Chênes",
    "cours de la Marne",
    "rue Pasteur",
    "avenue de la Libération",
    "rue des Écoles",
    "route de Bayonne",
    "lotissement Les Bruyères",
    "rue Émile Zola",
    "quai des Chartrons",
)
FORMATIONS = (
    "3e",
    "2nde GT",
    "1re générale",
    "1re STMG",
    "Terminale générale",
    "Terminale STI2D",
    "2nde pro Commerce",
    "1re pro MELEC",
    "Terminale pro ASSP",
    "CAP Cuisine",
    "CAP Maçon",
    "CAP Coiffure",
    "CAP Petite enfance",
    "BTS NDRC",
    "Licence 1 Droit",
    "MLDS PAPS",
)
# Communes of the académie the ZAP table does not hold (département PSAD), and a few outside it.
UNZONED_COMMUNES = (
    ("33830", "Belin-Béliet"),
    ("33990", "Hourtin"),
    ("24380", "Vergt"),
    ("40630", "Sabres"),
    ("47140", "Penne-d'Agenais"),
    ("64350", "Lembeye"),
)
OUTSIDE_COMMUNES = (("31000", "Toulouse"), ("16000", "Angoulême"), ("17000", "La Rochelle"))

_QUALIFYING_MIX = (
    ("CAP", 25),
    ("BAC_PRO", 25),
    ("BAC_GENERAL", 15),
    ("BAC_TECHNO", 10),
    ("BEP", 4),
    ("BP", 4),
    ("BTS", 8),
    ("DUT", 2),
    ("BUT", 2),
    ("LICENCE", 3),
    ("MASTER", 1),
    ("DOCTORAT", 1),
)
_UNQUALIFIED_MIX = (("", 40), ("AUCUN", 25), ("DNB", 35))
# Age in years at the reference date: most leavers are 16-19, a few are under or over the band.
_AGE_MIX = (
    (14, 1),
    (15, 4),
    (16, 18),
    (17, 18),
    (18, 16),
    (19, 12),
    (20, 9),
    (21, 6),
    (22, 5),
    (23, 3),
    (24, 2),
    (25, 2),
    (26, 3),
    (27, 1),
)
_SOURCE_MIX = (
    (PartnerSource.CFA, 35),
    (PartnerSource.ML, 30),
    (PartnerSource.EN, 20),
    (PartnerSource.AGRI, 8),
    (PartnerSource.MLDS, 7),
)

FAULTY_SHARE = 0.03
DUPLICATE_SHARE = 0.01
FOUND_SHARE_OF_ELIGIBLE = 0.3  # of youths in the band without a qualifying diploma: ~15% of rows
_FAULTS = (
    ("ine", MISSING),
    ("nom", MISSING),
    ("prenom", MISSING),
    ("date_naissance", MISSING),
    ("date_sortie", MISSING),
    ("code_postal", MISSING),
    ("ine", INVALID_INE),
    ("date_naissance", INVALID_DATE),
    ("code_postal", INVALID_POSTCODE),
    ("diplome", UNKNOWN_DIPLOMA),
    ("date_sortie", SORTIE_AFTER_AS_OF),
    ("*", WRONG_FIELD_COUNT),
)
_COLUMN = {name: index for index, name in enumerate(SIEI_COLUMNS)}
_CAMPAIGN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


@dataclass(frozen=True)
class DemoFiles:
    """What `generate` wrote, and what a correct repérage must find in it."""

    siei: Path
    partners: dict[PartnerSource, Path]
    campaign: str
    as_of: date
    planned: CampaignTally  # exact: classify must report exactly this
    partner_rows: dict[PartnerSource, int] = field(default_factory=dict)
    partner_rejected: dict[PartnerSource, int] = field(default_factory=dict)

    @property
    def faulty(self) -> int:
        return self.planned.rejected

    def __str__(self) -> str:
        p = self.planned
        return (
            f"{self.siei} ({p.rows} rows: {p.rejected} faulty, {p.duplicates} duplicates, "
            f"{p.excluded} excluded, {p.identified} identified) and {len(self.partners)} partner files "
            f"in {self.siei.parent}"
        )


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def respellings(name: str) -> tuple[str, ...]:
    """How other bases write the same name; all equal once normalised ("D'Arcy" -> "D ARCY")."""
    plain = _strip_accents(name)
    return (
        name.upper(),
        plain.upper().replace("'", " ").replace("-", " "),
        name.replace("'", "’"),
        plain.replace("-", "").replace("'", ""),
    )


def _ascii_slug(name: str) -> str:
    return "".join(c for c in _strip_accents(name).lower() if c.isalnum())


def _weighted(mix: tuple[tuple[object, int], ...]) -> tuple:
    return tuple(value for value, weight in mix for _ in range(weight))


def _anniversary(on: date, years: int) -> date:
    try:
        return on.replace(year=on.year - years)
    except ValueError:  # 29 February in a year without one
        return date(on.year - years, 2, 28)


def _uai(departement: str, number: int) -> str:
    digits = f"0{departement}{number:04d}"
    return digits + "ABCDEFGHJKLMNPRSTUVWXYZ"[int(digits) % 23]


def generate(
    youths: int,
    seed: int,
    out: Path,
    campaign: str = "demo",
    as_of: date = date(2026, 11, 2),
    policy: Policy | None = None,
) -> DemoFiles:
    """Write out/siei_<campaign>.csv (UTF-8, ';', `youths` data rows) and out/partner_<source>.csv.

    Deterministic for a seed. Every youth is given a fate first (faulty row, duplicate row, out of
    the age band, qualified, found in a partner base, found nowhere), and the data is written to
    match it, so the planned tally is exact for `policy` (the default one if None). Partner files
    also hold enrolments that must not count (ended before, or starting after, the reference
    date), people who are not in the campaign, and a few faulty rows; the Mission locale's file is
    Windows-1252 with ',' to exercise detection.
    """
    if youths < 0:
        raise ValueError("youths must be >= 0")
    if not _CAMPAIGN_NAME.match(campaign):
        raise ValueError("campaign must be letters, digits, '.', '_' or '-' (it names the file)")
    policy = policy or Policy()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _Generator(youths, seed, out, campaign, as_of, policy).run()


class _Generator:
    def __init__(self, youths: int, seed: int, out: Path, campaign: str, as_of: date, policy: Policy) -> None:
        self.youths = youths
        self.rng = random.Random(seed)
        self.out = out
        self.campaign = campaign
        self.as_of = as_of
        self.today = as_of.toordinal()
        self.policy = policy
        self.plan = CampaignTally()
        self.partner_rows = dict.fromkeys(PartnerSource, 0)
        self.partner_rejected = dict.fromkeys(PartnerSource, 0)
        self.places = [(code, commune, dep) for code, commune, dep, _zap in zap_communes()]
        self.unzoned = UNZONED_COMMUNES
        self.outside = OUTSIDE_COMMUNES
        self.uai = {dep: [_uai(dep, n) for n in range(1, 40, 3)] for dep in ("24", "33", "40", "47", "64")}
        self.nom_slugs = [_ascii_slug(n) for n in NOMS]
        self.prenom_slugs = [_ascii_slug(p) for p, _ in PRENOMS]
        self.nom_spellings = [respellings(n) for n in NOMS]
        self.prenom_spellings = [respellings(p) for p, _ in PRENOMS]
        self.ages = _weighted(_AGE_MIX)
        self.qualifying_codes = _weighted(_QUALIFYING_MIX)
        self.unqualified_codes = _weighted(_UNQUALIFIED_MIX)
        self.sources = _weighted(_SOURCE_MIX)
        self.edge_births = self._edge_births()
        self._fr: dict[int, str] = {}
        self._iso: dict[int, str] = {}
        self.recent: list[list[str]] = []
        self.faults = 0
        self.outsiders = 0

    def _edge_births(self) -> list[int]:
        """Birthdays on and around the band's ends, and 29 February births."""
        low, high = self.policy.min_age, self.policy.max_age + 1
        edges = [
            _anniversary(self.as_of, low),
            _anniversary(self.as_of, low) + timedelta(days=1),
            _anniversary(self.as_of, high),
            _anniversary(self.as_of, high) + timedelta(days=1),
        ]
        edges += [
            date(y, 2, 29)
            for y in range(self.as_of.year - high, self.as_of.year - low + 1)
            if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        ]
        return [d.toordinal() for d in edges]

    # -- small helpers: each called per row, so kept cheap ----------------------------------------

    def fr(self, ordinal: int) -> str:
        text = self._fr.get(ordinal)
        if text is None:
            d = date.fromordinal(ordinal)
            text = self._fr[ordinal] = f"{d.day:02d}/{d.month:02d}/{d.year:04d}"
        return text

    def iso(self, ordinal: int) -> str:
        text = self._iso.get(ordinal)
        if text is None:
            text = self._iso[ordinal] = date.fromordinal(ordinal).isoformat()
        return text

    @staticmethod
    def ine(number: int) -> str:
        # Multiplying by a number prime to 10 permutes 0..10^10-1: distinct numbers, distinct INEs.
        digits = (number * 7_919_317 + 1_234_567) % 10_000_000_000
        return f"{digits:010d}{chr(65 + number % 26)}"

    def birth(self) -> int:
        rng = self.rng
        if rng.random() < 0.01:
            return self.edge_births[int(rng.random() * len(self.edge_births))]
        age = self.ages[int(rng.random() * len(self.ages))]
        return self.today - int((age + rng.random()) * 365.2425)

    # -- the rows ---------------------------------------------------------------------------------

    def run(self) -> DemoFiles:
        siei_path = self.out / f"siei_{self.campaign}.csv"
        partner_paths = {source: self.out / f"partner_{source.value}.csv" for source in PartnerSource}
        handles = []
        try:
            siei_handle = open(siei_path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            handles.append(siei_handle)
            self.partners: dict[PartnerSource, csv.writer] = {}
            for source, path in partner_paths.items():
                ml = source is PartnerSource.ML
                handle = open(path, "w", encoding="cp1252" if ml else "utf-8", newline="")  # noqa: SIM115
                handles.append(handle)
                writer = csv.writer(handle, delimiter="," if ml else ";")
                writer.writerow(("ine", "nom", "prenom", "date_naissance", "date_debut", "date_fin"))
                self.partners[source] = writer
            siei = csv.writer(siei_handle, delimiter=";")
            siei.writerow(SIEI_COLUMNS)
            self.write_rows(siei)
        finally:
            for handle in handles:
                handle.close()
        return DemoFiles(
            siei_path,
            partner_paths,
            self.campaign,
            self.as_of,
            self.plan,
            self.partner_rows,
            self.partner_rejected,
        )

    def write_rows(self, siei: csv.writer) -> None:
        rng, plan = self.rng, self.plan
        for number in range(self.youths):
            plan.rows += 1
            draw = rng.random()
            if draw < FAULTY_SHARE:
                siei.writerow(self.faulty_row(number))
            elif draw < FAULTY_SHARE + DUPLICATE_SHARE and self.recent:
                siei.writerow(self.duplicate_row())
                plan.duplicates += 1
            else:
                row = self.youth_row(number)
                siei.writerow(row)
                if len(self.recent) < 64:
                    self.recent.append(row)
                else:
                    self.recent[int(rng.random() * 64)] = row
            if rng.random() < 0.04:
                self.outsider()

    def youth_row(self, number: int) -> list[str]:
        """A valid row, its fate planned, with the partner enrolments that fate needs."""
        rng, policy, plan = self.rng, self.policy, self.plan
        ine = self.ine(number)
        birth = self.birth()
        age = age_on(date.fromordinal(birth), self.as_of)
        qualified = rng.random() < 0.4
        if qualified:
            code = self.qualifying_codes[int(rng.random() * len(self.qualifying_codes))]
        else:
            code = self.unqualified_codes[int(rng.random() * len(self.unqualified_codes))]
        in_band = policy.min_age <= age <= policy.max_age
        is_qualifying = bool(code) and Diploma(code) in policy.qualifying
        by_identity = False
        if not in_band:
            fate: ExclusionReason | None = ExclusionReason.OUT_OF_AGE_BAND
        elif is_qualifying:
            fate = ExclusionReason.QUALIFIED
        elif rng.random() < FOUND_SHARE_OF_ELIGIBLE:
            fate = ExclusionReason.FOUND_IN_PARTNER_BASE
            by_identity = rng.random() < 0.4
        else:
            fate = None
        if fate is None:
            plan.identified += 1
        else:
            plan.excluded_by_reason[fate] += 1

        n_nom = int(rng.random() * len(NOMS))
        n_prenom = int(rng.random() * len(PRENOMS))
        prenom, sexe = PRENOMS[n_prenom]
        if by_identity:
            # Only youths found by identity (and outsiders without INE) carry a double surname, so
            # an identity-only enrolment can never fall on a youth planned as found nowhere.
            other = (n_nom + 1 + int(rng.random() * (len(NOMS) - 1))) % len(NOMS)
            nom = f"{NOMS[n_nom]}-{NOMS[other]}"
            nom_slug = self.nom_slugs[n_nom] + self.nom_slugs[other]
        else:
            nom = NOMS[n_nom]
            nom_slug = self.nom_slugs[n_nom]
        if rng.random() < 0.1:
            code = code.lower()

        place = rng.random()
        if place < 0.95:
            code_postal, commune, dep = self.places[int(rng.random() * len(self.places))]
        elif place < 0.99:
            code_postal, commune = self.unzoned[int(rng.random() * len(self.unzoned))]
            dep = code_postal[:2]
        else:
            code_postal, commune = self.outside[int(rng.random() * len(self.outside))]
            dep = "33"
        left = self.today - (0 if rng.random() < 0.005 else int(rng.random() * 700))
        dates = self.fr if rng.random() < 0.85 else self.iso
        uais = self.uai.get(dep) or self.uai["33"]
        row = [
            ine,
            nom,
            prenom,
            dates(birth),
            sexe,
            code_postal,
            commune,
            f"{1 + int(rng.random() * 120)} {STREETS[int(rng.random() * len(STREETS))]}",
            f"06 00 {int(rng.random() * 100):02d} {int(rng.random() * 100):02d} {int(rng.random() * 100):02d}",
            f"{self.prenom_slugs[n_prenom]}.{nom_slug}{number % 1000}@example.org"
            if rng.random() < 0.7
            else "",
            uais[int(rng.random() * len(uais))],
            FORMATIONS[int(rng.random() * len(FORMATIONS))],
            dates(left),
            code,
        ]

        if fate is ExclusionReason.FOUND_IN_PARTNER_BASE:
            self.enrol(ine, nom, n_prenom, birth, active=True, by_identity=by_identity)
        elif fate is not None and rng.random() < 0.1:
            self.enrol(ine, nom, n_prenom, birth, active=True, by_identity=False)  # rule order wins
        elif fate is None and rng.random() < 0.06:
            self.enrol(ine, nom, n_prenom, birth, active=False, by_identity=rng.random() < 0.5)
        return row

    def faulty_row(self, number: int) -> list[str]:
        """A row with exactly one fault, the kinds taken in turn so that a small file has each."""
        field_name, reason = _FAULTS[self.faults % len(_FAULTS)]
        self.faults += 1
        rng = self.rng
        prenom, sexe = PRENOMS[int(rng.random() * len(PRENOMS))]
        row = [
            self.ine(number),
            NOMS[int(rng.random() * len(NOMS))],
            prenom,
            self.fr(self.today - int((17 + rng.random()) * 365.2425)),
            sexe,
            "33000",
            "Bordeaux",
            "",
            "",
            "",
            "",
            "",
            self.fr(self.today - 30),
            "",
        ]
        if reason == MISSING:
            row[_COLUMN[field_name]] = ""
        elif reason == INVALID_INE:
            row[_COLUMN["ine"]] = "INE" + str(number)[:5]
        elif reason == INVALID_DATE:
            row[_COLUMN["date_naissance"]] = "31/02/2009"
        elif reason == INVALID_POSTCODE:
            row[_COLUMN["code_postal"]] = "3300A"
        elif reason == UNKNOWN_DIPLOMA:
            row[_COLUMN["diplome"]] = "BAC+2"
        elif reason == SORTIE_AFTER_AS_OF:
            row[_COLUMN["date_sortie"]] = self.iso(self.today + 1 + int(rng.random() * 60))
        elif reason == WRONG_FIELD_COUNT:
            row.pop()
        self.plan.rejected += 1
        self.plan.rejected_by_reason[reason] += 1
        return row

    def duplicate_row(self) -> list[str]:
        """A youth already in the file again, the INE typed differently."""
        row = list(self.recent[int(self.rng.random() * len(self.recent))])
        ine = row[0]
        row[0] = f"{ine[:4]} {ine[4:8]} {ine[8:].lower()}"
        return row

    def enrol(
        self, ine: str, nom: str, n_prenom: int, birth: int, *, active: bool, by_identity: bool
    ) -> None:
        """A partner enrolment of this youth, active on the reference date or not."""
        rng = self.rng
        source = self.sources[int(rng.random() * len(self.sources))]
        today = self.today
        if active:
            start = today - int(rng.random() * 400)
            end_draw = rng.random()
            end = (
                None if end_draw < 0.6 else today if end_draw < 0.65 else today + 1 + int(rng.random() * 300)
            )
        elif rng.random() < 0.5:  # ended before the reference date
            end = today - 1 - int(rng.random() * 200)
            start = end - int(rng.random() * 300)
        else:  # starts after it
            start = today + 1 + int(rng.random() * 60)
            end = None
        if by_identity:
            spelled_nom = respellings(nom)[int(rng.random() * 4)]
            spelled_prenom = self.prenom_spellings[n_prenom][int(rng.random() * 4)]
            ine_field = ""
        else:
            spelled_nom, spelled_prenom = nom.upper(), PRENOMS[n_prenom][0]
            ine_field = ine if rng.random() < 0.8 else f"{ine[:5]} {ine[5:]}"
        self.partners[source].writerow(
            (
                ine_field,
                spelled_nom,
                spelled_prenom,
                self.iso(birth),
                self.iso(start),
                "" if end is None else self.iso(end),
            )
        )
        self.partner_rows[source] += 1

    def outsider(self) -> None:
        """Someone enrolled at a partner who is not in the campaign; one in ten of them is faulty."""
        rng = self.rng
        self.outsiders += 1
        source = self.sources[int(rng.random() * len(self.sources))]
        n_prenom = int(rng.random() * len(PRENOMS))
        birth = self.today - int((16 + rng.random() * 10) * 365.2425)
        with_ine = rng.random() < 0.7
        if with_ine:
            ine, nom = self.ine(self.youths + self.outsiders), NOMS[int(rng.random() * len(NOMS))]
        else:
            first = int(rng.random() * len(NOMS))
            ine, nom = (
                "",
                f"{NOMS[first]}-{NOMS[(first + 1 + int(rng.random() * (len(NOMS) - 1))) % len(NOMS)]}",
            )
        row = [
            ine,
            nom,
            PRENOMS[n_prenom][0],
            self.iso(birth),
            self.iso(self.today - int(rng.random() * 300)),
            "",
        ]
        if rng.random() < 0.1:
            row[4] = f"{self.as_of.year}-13-01"
            self.partner_rejected[source] += 1
        self.partners[source].writerow(row)
        self.partner_rows[source] += 1
