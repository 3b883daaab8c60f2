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
