"""deploy/topology.toml is the one definition of streams, consumers and databases."""

from raccrochage_platform.topology import ConsumerDef, load_topology


def test_every_producing_service_has_its_stream() -> None:
    topology = load_topology()
    assert set(topology.services) == {"reperage", "psad", "foquale", "mlds", "clause_sociale", "ops"}
    for service in topology.services.values():
        if service.stream:
            assert service.stream in topology.streams
    assert {"PARTNER", "DEADLETTER"} <= set(topology.streams)
    assert all(stream.storage == "file" for stream in topology.streams.values())


def test_consumers_refer_to_declared_streams_and_services() -> None:
    topology = load_topology()
    for consumer in topology.consumers.values():
        assert consumer.stream in topology.streams
        assert consumer.service in topology.services


def test_backoff_grows_then_stays_at_its_last_step() -> None:
    consumer = ConsumerDef("d", "psad", "REPERAGE", ("reperage.>",), backoff_seconds=(1, 5, 30))
    assert [consumer.backoff_for(n) for n in (1, 2, 3, 4, 9)] == [1, 5, 30, 30, 30]
    config = consumer.config()
    assert config.max_deliver == consumer.max_deliver + 1  # our code dead-letters the last one
    assert config.filter_subject == "reperage.>"


def test_no_stream_stores_identities_or_requests() -> None:
    """Partner enrolments (identities) and rpc requests travel by request/reply only."""
    from fnmatch import fnmatch

    def nats_match(pattern: str, subject: str) -> bool:
        glob = pattern.replace(">", "*").replace(".*", ".[!.]*") if ">" not in pattern else pattern[:-1] + "*"
        return fnmatch(subject, glob)

    subjects = [s for stream in load_topology().streams.values() for s in stream.subjects]
    for forbidden in (
        "partner.cfa-33.enrolment.started.v1",
        "partner.ml-1.enrolment.ended.v1",
        "rpc.reperage.contact_card.psad",
    ):
        assert not [s for s in subjects if nats_match(s, forbidden)], forbidden


def test_a_per_partner_consumer_is_one_durable_per_declared_partner(tmp_path) -> None:
    partners = tmp_path / "partners.toml"
    partners.write_text('[partners.cfa-a]\nbase = "cfa"\n\n[partners.ml_b]\nbase = "ml"\n', encoding="utf-8")
    consumers = {c.durable: c for c in load_topology(partners=partners).consumers_of("foquale") if c.partner}
    assert set(consumers) == {"foquale_partner_cfa-a", "foquale_partner_ml_b"}
    ours = consumers["foquale_partner_cfa-a"]
    assert ours.partner == "cfa-a"
    assert "partner.cfa-a.seats.published.v1" in ours.filter_subjects
    assert all(subject.startswith("partner.cfa-a.seats.") for subject in ours.filter_subjects)
    assert not any(subject.endswith(".feedback.v1") for subject in ours.filter_subjects)


def test_the_partner_stream_bounds_what_each_partner_stores() -> None:
    config = load_topology().streams["PARTNER"].config()
    assert config.max_msgs_per_subject == 50_000  # per subject, so per partner: never another's
    assert config.max_msg_size == 64 * 1024
