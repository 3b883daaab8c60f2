"""Checks that the deployment files (compose, nats, postgres) agree with deploy/topology.toml."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from raccrochage_rig.nats import clustered

ROOT = Path(__file__).resolve().parents[2]
NATS_DIR = ROOT / "deploy" / "nats"
TOPOLOGY = tomllib.loads((ROOT / "deploy" / "topology.toml").read_text(encoding="utf-8"))
SERVICES = TOPOLOGY["services"]
NATS_SERVER = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
    "nats-server"
)
PASSWORD_ENV = {f"RACCROCHAGE_NATS_PASSWORD_{name.upper()}": "pdev1" for name in SERVICES}


# --- a reader for the subset of the nats config syntax these files use -----------------------

_TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[{}\[\],:=]|[^\s{}\[\],:="\']+')


def _tokens(text: str) -> list[str]:
    # A comment starts at '#' or '//' at a line start or after blanks, so "nats://" survives.
    lines = (re.sub(r"(^|\s)(#|//).*$", "", line) for line in text.splitlines())
    return _TOKEN.findall("\n".join(lines))


def _value(tokens: list[str], i: int) -> tuple[object, int]:
    token = tokens[i]
    if token == "{":
        return _map(tokens, i + 1, "}")
    if token == "[":
        items: list[object] = []
        i += 1
        while tokens[i] != "]":
            if tokens[i] == ",":
                i += 1
                continue
            item, i = _value(tokens, i)
            items.append(item)
        return items, i + 1
    return token.strip("\"'"), i + 1


def _map(tokens: list[str], i: int, end: str | None) -> tuple[dict, int]:
    result: dict = {}
    while i < len(tokens) and tokens[i] != end:
        if tokens[i] == ",":
            i += 1
            continue
        key = tokens[i].strip("\"'")
        i += 1
        if key == "include":
            result.setdefault("include", []).append(tokens[i].strip("\"'"))
            i += 1
            continue
        if tokens[i] in (":", "="):
            i += 1
        result[key], i = _value(tokens, i)
    return result, i + 1


def parse_nats_conf(text: str) -> dict:
    return _map(_tokens(text), 0, None)[0]


def check_with_nats_server(conf: Path, env: dict[str, str] | None = None) -> None:
    if NATS_SERVER is None:
        pytest.skip("no nats-server binary")
    done = subprocess.run(
        [NATS_SERVER, "-t", "-c", str(conf)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- docker-compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def _host_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path, for the bind mounts of a compose service."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def test_compose_runs_nats_with_the_compose_config(compose):
    nats = compose["services"]["nats"]
    mounts = _host_mounts(nats)
    assert "/etc/nats/nats.conf" in nats["command"]
    assert mounts["/etc/nats/nats.conf"] == NATS_DIR / "compose.conf"
    assert mounts["/etc/nats/nats.conf"].is_file()


def test_compose_runs_postgres_with_the_init_script(compose):
    postgres = compose["services"]["postgres"]
    mounts = _host_mounts(postgres)
    # init.sh alone runs at init; it passes each role's password to init.sql from the environment
    assert mounts["/docker-entrypoint-initdb.d/init.sh"] == ROOT / "deploy" / "postgres" / "init.sh"
    assert mounts["/etc/raccrochage/init.sql"] == ROOT / "deploy" / "postgres" / "init.sql"
    assert not [target for target in mounts if target.endswith(".sql") and "initdb.d" in target]
    script = (ROOT / "deploy" / "postgres" / "init.sh").read_text(encoding="utf-8")
    assert "-f /etc/raccrochage/init.sql" in script
    for name in SERVICES:
        variable = f"RACCROCHAGE_PG_PASSWORD_{name.upper()}"
        assert f'-v {name}_password="${variable}"' in script
        assert postgres["environment"][variable] == f"${{{variable}:?set {variable}}}"


def test_compose_rig_init_declares_streams_once_nats_is_healthy(compose):
    rig_init = compose["services"]["rig-init"]
    assert rig_init["command"] == ["raccrochage", "declare"]
    assert rig_init["depends_on"]["nats"]["condition"] == "service_healthy"
    assert (ROOT / rig_init["build"]["dockerfile"]).is_file()


def test_compose_lists_the_streams_and_databases_of_the_topology(compose):
    streams = {s["stream"] for s in SERVICES.values() if "stream" in s} | set(TOPOLOGY["streams"])
    databases = {s["database"] for s in SERVICES.values()}
    listed = compose["x-raccrochage"]
    assert sorted(listed["streams"]) == sorted(streams)
    assert sorted(listed["databases"]) == sorted(databases)


# --- postgres ------------------------------------------------------------------------------


def test_init_sql_gives_each_service_a_role_and_a_database_no_one_else_reaches():
    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text(encoding="utf-8")
    sql = re.sub(r"--.*", "", sql)
    databases = {s["database"] for s in SERVICES.values()}

    roles = re.findall(r"CREATE ROLE (\w+) LOGIN", sql)
    owners = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql))
    revoked = set(re.findall(r"REVOKE CONNECT ON DATABASE (\w+) FROM PUBLIC", sql))
    granted = re.findall(r"GRANT CONNECT ON DATABASE (\w+) TO (\w+)", sql)

    assert sorted(roles) == sorted(databases)
    assert owners == {name: name for name in databases}
    assert databases <= revoked
    assert sorted(granted) == sorted((name, name) for name in databases)


def test_init_sql_turns_jit_off_for_every_service_role():
    """Even behind a pooler that drops the services' own `jit=off` startup parameter."""
    sql = re.sub(r"--.*", "", (ROOT / "deploy" / "postgres" / "init.sql").read_text(encoding="utf-8"))
    assert sorted(re.findall(r"ALTER ROLE (\w+) SET jit = off;", sql)) == sorted(
        re.findall(r"CREATE ROLE (\w+) LOGIN", sql)
    )


# --- nats ----------------------------------------------------------------------------------


def test_prod_conf_clusters_with_tls_and_fsyncs_every_write():
    text = (NATS_DIR / "prod.conf").read_text(encoding="utf-8")
    conf = parse_nats_conf(text)
    assert re.search(r"^\s*sync_interval:\s*always\s*$", text, re.MULTILINE)
    assert conf["jetstream"]["sync_interval"] == "always"
    assert conf["cluster"]["routes"] == "$CLUSTER_ROUTES"
    assert conf["server_name"] == "$SERVER_NAME"
    for tls in (conf["tls"], conf["cluster"]["tls"]):
        assert all(tls[key].startswith("/etc/nats/tls/") for key in ("cert_file", "key_file"))
    assert conf["include"] == ["./users.conf"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")
def test_prod_conf_is_accepted_by_nats_server(tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=nats", "-keyout", tls / "server-key.pem", "-out", tls / "server.pem"],
        check=True, capture_output=True,
    )  # fmt: skip
    for name in ("ca.pem", "route.pem"):
        shutil.copy(tls / "server.pem", tls / name)
    shutil.copy(tls / "server-key.pem", tls / "route-key.pem")
    prod = (NATS_DIR / "prod.conf").read_text(encoding="utf-8")
    (tmp_path / "prod.conf").write_text(prod.replace("/etc/nats/tls/", f"{tls}/"))
    shutil.copy(NATS_DIR / "users.conf", tmp_path / "users.conf")
    routes = '["nats-route://nats-1:6222", "nats-route://nats-2:6222", "nats-route://nats-3:6222"]'
    env = {"SERVER_NAME": "nats-1", "CLUSTER_ROUTES": routes, **PASSWORD_ENV}
    check_with_nats_server(tmp_path / "prod.conf", env)


@pytest.fixture(scope="module")
def users() -> dict[str, dict]:
    conf = parse_nats_conf((NATS_DIR / "users.conf").read_text(encoding="utf-8"))
    return {user["user"]: user for user in conf["accounts"]["RACCROCHAGE"]["users"]}


def test_users_conf_has_one_user_per_service(users):
    assert set(users) == set(SERVICES)
    for name, user in users.items():
        assert user["password"] == f"$RACCROCHAGE_NATS_PASSWORD_{name.upper()}"
        # Its inbox, plus the request/reply subjects it answers: nothing of another service.
        assert user["permissions"]["subscribe"]["allow"] == ["_INBOX.>", *SERVICES[name].get("serves", [])]
        assert set(SERVICES[name].get("requests", [])) <= set(user["permissions"]["publish"]["allow"])


@pytest.mark.parametrize("name", [name for name, s in SERVICES.items() if "subjects" in s])
def test_a_service_publishes_on_its_own_subjects_only(users, name):
    allowed = set(users[name]["permissions"]["publish"]["allow"])
    assert set(SERVICES[name]["subjects"]) <= allowed
    assert {"deadletter.>", "$JS.API.>", "$JS.ACK.>", "_INBOX.>"} <= allowed
    others = {subject for other, s in SERVICES.items() if other != name for subject in s.get("subjects", [])}
    assert not allowed & (others | {">", "partner.>"})


def test_ops_reads_and_changes_no_stream(users):
    publish = users["ops"]["permissions"]["publish"]
    # Beside the API and acks: its own dead letters, and the service streams' subjects to
    # replay dead letters on them (partner subjects never: they carry a partner's identity);
    # its answers to the vault's erasure requests and export requests (docs/privacy.md).
    streams = {subject for s in SERVICES.values() for subject in s.get("subjects", [])}
    privacy = {"privacy.erasure.done.v1", "_INBOX.>"}
    assert set(publish["allow"]) == {"$JS.API.>", "$JS.ACK.>", "deadletter.>"} | streams | privacy
    assert {"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>"} <= set(publish["deny"])
    # Message deletion only in DEADLETTER (a replayed dead letter), never in a service stream.
    stream_names = {s["stream"] for s in SERVICES.values() if s.get("stream")}
    assert {f"$JS.API.STREAM.MSG.DELETE.{name}" for name in stream_names | {"PARTNER", "PRIVACY"}} <= set(
        publish["deny"]
    )


def _may_delete_messages_of(user: dict, stream: str) -> bool:
    publish = user["permissions"]["publish"]
    deny = set(publish.get("deny", []))
    return "$JS.API.>" in publish["allow"] and not deny & {
        "$JS.API.STREAM.MSG.DELETE.>",
        f"$JS.API.STREAM.MSG.DELETE.{stream}",
    }


def test_only_the_vault_deletes_messages_and_nobody_purges_or_deletes_a_stream(users):
    """The erasure sweep (docs/privacy.md): reperage alone deletes messages, in every stream;
    ops also deletes the dead letters it replays."""
    streams = {s["stream"] for s in SERVICES.values() if s.get("stream")} | set(TOPOLOGY["streams"])
    for stream in streams - {"DEADLETTER"}:
        assert {name for name, user in users.items() if _may_delete_messages_of(user, stream)} == {"reperage"}
    assert {name for name, user in users.items() if _may_delete_messages_of(user, "DEADLETTER")} == {
        "reperage",
        "ops",
    }
    for name, user in users.items():
        assert {"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>"} <= set(
            user["permissions"]["publish"].get("deny", [])
        ), name


def test_partner_template_publishes_only_on_its_own_subjects(tmp_path):
    template = (NATS_DIR / "partner-user.template.conf").read_text(encoding="utf-8")
    rendered = template.format_map(
        {"partner_id": "cfa_42", "password_env": "RACCROCHAGE_NATS_PASSWORD_PARTNER_CFA_42"}
    )
    user = parse_nats_conf(f"user_block: {rendered}")["user_block"]
    assert user["user"] == "partner_cfa_42"
    assert user["password"] == "$RACCROCHAGE_NATS_PASSWORD_PARTNER_CFA_42"
    assert user["permissions"]["publish"] == {"allow": ["partner.cfa_42.>"]}
    assert user["permissions"]["subscribe"] == {"allow": ["_INBOX.partner_cfa_42.>"]}

    conf = tmp_path / "partner.conf"
    conf.write_text(f"accounts {{ RACCROCHAGE {{ jetstream: enabled\nusers: [\n{rendered}\n] }} }}\n")
    check_with_nats_server(conf, {"RACCROCHAGE_NATS_PASSWORD_PARTNER_CFA_42": "pdev1"})


def test_rig_conf_renders_to_a_valid_jetstream_config(tmp_path):
    template = (NATS_DIR / "rig.conf").read_text(encoding="utf-8")
    placeholders = {"host": "127.0.0.1", "port": 14222, "http_port": 18222}
    rendered = template.format_map({**placeholders, "store_dir": str(tmp_path / "js")})
    conf = parse_nats_conf(rendered)
    assert conf["listen"] == "127.0.0.1:14222"
    assert conf["jetstream"]["store_dir"] == str(tmp_path / "js")
    assert conf["max_payload"] == "1MB"
    (tmp_path / "rig.conf").write_text(rendered)
    check_with_nats_server(tmp_path / "rig.conf")


def test_a_rig_cluster_node_is_a_valid_config_synced_always_with_routes_to_every_node(tmp_path):
    template = (NATS_DIR / "rig.conf").read_text(encoding="utf-8")
    placeholders = {"host": "127.0.0.1", "port": 14222, "http_port": 18222}
    rendered = template.format_map({**placeholders, "store_dir": str(tmp_path / "js")})
    node = clustered(rendered, "raccrochage-rig-2", "127.0.0.1", 16223, (16222, 16223, 16224))
    conf = parse_nats_conf(node)
    assert conf["server_name"] == "raccrochage-rig-2"
    assert conf["jetstream"]["sync_interval"] == "always"
    assert conf["cluster"]["listen"] == "127.0.0.1:16223"
    assert len(conf["cluster"]["routes"]) == 3
    (tmp_path / "node.conf").write_text(node)
    check_with_nats_server(tmp_path / "node.conf")


def test_compose_conf_is_a_valid_single_node_jetstream_config():
    conf = parse_nats_conf((NATS_DIR / "compose.conf").read_text(encoding="utf-8"))
    assert conf["jetstream"]["sync_interval"] == "always"
    assert "cluster" not in conf
    check_with_nats_server(NATS_DIR / "compose.conf")


@pytest.mark.parametrize("name", list(SERVICES))
def test_compose_runs_every_service_of_the_topology_on_its_own_database_after_migrating(compose, name):
    service = compose["services"][name]
    assert service["command"][-1] == f"raccrochage migrate {name} && exec raccrochage serve {name}"
    environment = service["environment"]
    assert environment["RACCROCHAGE_SERVICE"] == name
    assert environment["DATABASE_URL"].endswith(f"@postgres:5432/{SERVICES[name]['database']}")
    password = f"RACCROCHAGE_PG_PASSWORD_{name.upper()}"
    assert environment["DATABASE_URL"].startswith(f"postgresql://{name}:${{{password}:?")
    assert environment["RACCROCHAGE_TOKEN_KEY"].startswith("${RACCROCHAGE_TOKEN_KEY:?")
    assert service["depends_on"]["rig-init"]["condition"] == "service_completed_successfully"


# A secret's name; its value in compose must be an interpolation of the environment.
SECRET_NAME = re.compile(r"(KEY|PASSWORD|SECRET)$")


def test_compose_takes_every_secret_from_the_environment(compose):
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            if SECRET_NAME.search(variable):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (name, variable, value)
            # and no password written inside a URL
            assert not re.search(r"://[^/:@]+:[^$/@][^/@]*@", str(value)), (name, variable)


def test_grafana_dashboard_plots_only_metrics_ops_exports():
    """Each panel's series exist: ops' gauges (adapters/health.py) or the platform's counters."""
    import json

    from prometheus_client import REGISTRY
    from raccrochage_ops.adapters import health  # noqa: F401  (registers ops' gauges)
    from raccrochage_platform import metrics  # noqa: F401

    known = {sample_family.name for sample_family in REGISTRY.collect()}
    known |= {name + "_total" for name in known}
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "raccrochage-pipeline.json").read_text(encoding="utf-8")
    )
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"raccrochage_[a-z_]+", target["expr"]):
                assert name in known, (panel["title"], name)
