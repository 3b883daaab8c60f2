"""`raccrochage mlds ...`: the MLDS's operator commands (a `raccrochage.cli` plugin)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="MLDS: the yearly survey.", no_args_is_help=True)


@app.callback()
def mlds() -> None:
    """MLDS operator commands."""


@app.command("survey")
def survey_command(
    year: Annotated[str, typer.Option(help="the school year, e.g. 2025-2026")],
    out: Annotated[Path, typer.Option(help="the file to write: .csv or .xlsx")],
    threshold: Annotated[int, typer.Option(min=5, help="cells counting fewer youths are withheld")] = 5,
) -> None:
    """The ministry's yearly survey, rebuilt from the MLDS stream (NATS_URL, else the rig's):
    entries and exits per dispositif and département, exits by destination and duration, the
    shares back in training and under the obligation de formation; small cells withheld."""
    from ..adapters.survey_files import write_survey
    from ..domain.dates import SchoolYear

    try:
        school_year = SchoolYear.parse(year)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--year") from None
    if out.suffix.lower() not in (".csv", ".xlsx"):
        raise typer.BadParameter(f"{out}: the survey is written as .csv or .xlsx", param_hint="--out")
    survey = asyncio.run(_survey(school_year, threshold))
    write_survey(survey, out)
    withheld = sum(row.value == "s" for row in survey.rows)
    typer.echo(
        f"{out}: survey {school_year}, {len(survey.rows)} cells, {withheld} withheld (under {threshold})"
    )


async def _survey(year, threshold: int):
    import nats
    from raccrochage_platform.settings import nats_servers
    from raccrochage_rig.state import rig_dir
    from raccrochage_rig.status import nats_url

    from ..adapters.stream_replay import replay
    from ..service_layer.survey import survey_from_events

    url = nats_url(rig_dir())
    if not url:
        raise typer.BadParameter("no NATS: start the rig (raccrochage up) or set NATS_URL")
    connection = await nats.connect(nats_servers(url), connect_timeout=5)
    try:
        events = await replay(connection.jetstream())
    finally:
        await connection.close()
    return survey_from_events(events, year, threshold)
