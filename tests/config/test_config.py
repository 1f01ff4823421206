"""gateway.config: defaults, layering (file < env < command line) and precise errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import (
    ENV_PREFIX,
    Config,
    dev_token_banner,
    load_config,
)
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "gateway.toml"

TOKENS = """
[auth.tokens]
"tok-alice-123456" = { principal = "alice", role = "dispatcher" }
"tok-wall-1234567" = { principal = "wall", role = "observer" }
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "gw.toml") -> str:
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return str(p)

    return write


def error(path, env=None, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as ei:
        load_config(path, env or {}, list(overrides))
    return ei.value


# ---- defaults and the shipped file ----------------------------------------------------------


def test_defaults_without_a_file():
    c = load_config(None, {}, [])
    assert isinstance(c, Config)
    assert c.gateway.data_dir == "data" and c.gateway.log_format == "auto"
    assert (c.control.host, c.control.port, c.control.path) == ("127.0.0.1", 8765, "/v1/control")
    assert c.control.ping_interval_s == 20 and c.control.ping_timeout_s == 20
    assert c.control.max_frame_bytes == 1_048_576
    assert (c.control.max_in_flight, c.control.send_queue) == (32, 1000)
    assert (c.control.hello_timeout_s, c.control.max_connections_per_source) == (10.0, 64)
    assert (c.http.host, c.http.port) == ("127.0.0.1", 8080)
    assert c.store.path == "gateway.db" and c.store_path == str(Path("data") / "gateway.db")
    assert (c.calls.ring_timeout_s, c.calls.dial_timeout_s) == (30, 60)
    assert (c.sip.host, c.sip.port, c.sip.proxy) == ("127.0.0.1", 5060, "auto")
    assert c.sip.codecs == ("PCMU", "PCMA", "G722") and c.sip.registration is None
    assert c.directory == ()


def test_frozen():
    c = load_config(None, {}, [])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.control.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.auth.tokens["x"] = None  # type: ignore[index]


def test_dev_tokens_generated_when_none_configured():
    c = load_config(None, {}, [])
    assert c.auth.dev_tokens and c.auth.generated
    assert sorted((i.principal, i.role) for i in c.auth.tokens.values()) == [
        ("dispatcher", "dispatcher"), ("observer", "observer"), ("terminal", "terminal")]
    assert all(len(t) >= 20 for t in c.auth.tokens)
    assert load_config(None, {}, []).auth.tokens != c.auth.tokens  # random each start
    banner = dev_token_banner(c)
    assert banner is not None and all(t in banner for t in c.auth.tokens)


def test_no_dev_tokens_when_tokens_configured_or_disabled(write):
    c = load_config(write(TOKENS), {}, [])
    assert not c.auth.generated and dev_token_banner(c) is None
    assert c.auth.tokens["tok-alice-123456"].principal == "alice"
    assert c.auth.tokens["tok-wall-1234567"].role == "observer"
    c = load_config(None, {}, ["auth.dev_tokens=false"])
    assert dict(c.auth.tokens) == {} and not c.auth.generated


def test_shipped_file_loads_with_example_directory():
    c = load_config(str(SHIPPED), {}, [])
    assert c.source == str(SHIPPED)
    assert (c.sip.host, c.sip.port) == ("127.0.0.1", 5060)
    assert (c.control.host, c.control.port, c.http.port) == ("127.0.0.1", 8765, 8080)
    assert c.gateway.data_dir == "data" and c.auth.dev_tokens
    kinds = {e.kind for e in c.directory}
    assert {"phone", "speaker", "terminal"} <= kinds
    assert all(e.uri.startswith("sip:") and "@127.0.0.1" in e.uri for e in c.directory if e.kind != "terminal")


# ---- layering -------------------------------------------------------------------------------


def test_file_overrides_defaults(write):
    c = load_config(write("""
[gateway]
id = "gw-north"
log_format = "json"
log_level = "DEBUG"
[control]
port = 9000
ping_interval_s = 2.5
[sip]
port = 5062
codecs = ["PCMA"]
max_workers = 1
warm_workers = 0
[sip.registration]
registrar = "sip:127.0.0.1:5080"
username = "gw"
password = "pw"
"""), {}, [])
    assert c.gateway.id == "gw-north" and c.gateway.log_format == "json"
    assert c.gateway.log_level == "debug"
    assert c.control.port == 9000 and c.control.ping_interval_s == 2.5
    assert c.control.host == "127.0.0.1"  # untouched keys keep defaults
    assert c.sip.port == 5062 and c.sip.codecs == ("PCMA",)
    reg = c.sip.registration
    assert (reg.registrar, reg.username, reg.password, reg.realm, reg.expires) == (
        "sip:127.0.0.1:5080", "gw", "pw", "*", 300)


def test_env_overrides_file_with_type_parsing(write):
    path = write("[sip]\nport = 5062\n[control]\nport = 9000\n")
    env = {
        f"{ENV_PREFIX}SIP__PORT": "5070",
        f"{ENV_PREFIX}SIP__CODECS": "PCMU, G722",
        f"{ENV_PREFIX}CONTROL__PING_TIMEOUT_S": "1.5",
        f"{ENV_PREFIX}AUTH__DEV_TOKENS": "no",
        f"{ENV_PREFIX}GATEWAY__ID": "gw-env",
        f"{ENV_PREFIX}SIP__REGISTRATION__REGISTRAR": "sip:127.0.0.1:5080",
        f"{ENV_PREFIX}SIP__REGISTRATION__USERNAME": "u",
        f"{ENV_PREFIX}SIP__REGISTRATION__PASSWORD": "p",
        f"{ENV_PREFIX}AUTH__TOKENS": '{ "env-token-1234" = { principal = "eve", role = "admin" } }',
        "PATH": "/usr/bin",  # other variables are ignored
        "DISPATCH_GATEWAY_OTHER": "x",
    }
    c = load_config(path, env, [])
    assert c.sip.port == 5070 and isinstance(c.sip.port, int)
    assert c.sip.codecs == ("PCMU", "G722")
    assert c.control.ping_timeout_s == 1.5 and c.control.port == 9000
    assert c.auth.dev_tokens is False
    assert c.gateway.id == "gw-env"
    assert c.sip.registration.password == "p"
    assert c.auth.tokens["env-token-1234"].role == "admin"


def test_env_list_as_toml_array():
    c = load_config(None, {f"{ENV_PREFIX}SIP__CODECS": '["G722", "PCMU"]'}, [])
    assert c.sip.codecs == ("G722", "PCMU")


def test_command_line_wins_over_env_and_file(write):
    path = write("[http]\nport = 8081\n")
    env = {f"{ENV_PREFIX}HTTP__PORT": "8082", f"{ENV_PREFIX}HTTP__HOST": "127.0.0.2"}
    c = load_config(path, env, ["http.port=8083", "control.host=0.0.0.0", "calls.ring_timeout_s=5"])
    assert c.http.port == 8083
    assert c.http.host == "127.0.0.2"  # env still beats the file where the CLI is silent
    assert c.control.host == "0.0.0.0" and c.calls.ring_timeout_s == 5


def test_directory_from_file(write):
    c = load_config(write("""
[[directory.endpoint]]
name = "desk-1"
uri = "sip:desk1@127.0.0.1:5091"
groups = ["dispatch", "all"]
[[directory.endpoint]]
name = "yard"
uri = "sips:yard@example.org"
kind = "speaker"
groups = ["all"]
profile = "yealink"
display_name = "Yard"
[[directory.endpoint]]
name = "pstn"
uri = "tel:+15551234567"
kind = "trunk"
"""), {}, [])
    names = [(e.name, e.kind, e.groups) for e in c.directory]
    assert names == [("desk-1", "phone", ("dispatch", "all")), ("yard", "speaker", ("all",)),
                     ("pstn", "trunk", ())]
    assert c.directory[1].profile == "yealink" and c.directory[1].display_name == "Yard"


# ---- errors: file, key, why -----------------------------------------------------------------


def test_bad_type_in_file(write):
    path = write('[sip]\nport = "abc"\n')
    e = error(path)
    assert (e.file, e.key) == (path, "sip.port")
    assert e.why == 'must be an integer 1..65535, got "abc"'
    assert str(e) == f'{path}: sip.port: must be an integer 1..65535, got "abc"'
    assert e.to_error()["data"]["reason"] == "config-error"


@pytest.mark.parametrize("text, key, why_part", [
    ("[sip]\nport = 70000\n", "sip.port", "1..65535, got 70000"),
    ("[sip]\nport = true\n", "sip.port", "must be an integer"),
    ("[control]\nping_interval_s = 0\n", "control.ping_interval_s", "seconds > 0"),
    ('[control]\npath = "v1"\n', "control.path", 'starting with "/"'),
    ('[control]\nhost = "not a host"\n', "control.host", "IP address or host name"),
    ('[gateway]\nlog_format = "xml"\n', "gateway.log_format", "auto, json, console"),
    ('[gateway]\nlog_level = "loud"\n', "gateway.log_level", "debug, info"),
    ('[auth]\ndev_tokens = "yes"\n', "auth.dev_tokens", "true or false"),
    ("[sip]\ncodecs = []\n", "sip.codecs", "non-empty list"),
    ('[sip]\nproxy = "kamailio"\n', "sip.proxy", "auto, none, external"),
    ("[sip]\nmax_workers = 2\nwarm_workers = 3\n", "sip.warm_workers", "<= sip.max_workers"),
    ("sip = 5\n", "sip", "must be a table"),
    ('[sip.registration]\nusername = "u"\npassword = "p"\n', "sip.registration.registrar",
     "is required"),
    ('[sip.registration]\nregistrar = "http://x"\nusername = "u"\npassword = "p"\n',
     "sip.registration.registrar", "sip:, sips: or tel:"),
])
def test_bad_values_in_file(write, text, key, why_part):
    path = write(text)
    e = error(path)
    assert (e.file, e.key) == (path, key)
    assert why_part in e.why


def test_unknown_keys_are_errors(write):
    path = write("[sip]\nprot = 5060\n")
    e = error(path)
    assert (e.file, e.key) == (path, "sip.prot")
    assert "unknown key" in e.why and '"port"' in e.why  # did you mean
    e = error(write("[sipp]\nport = 1\n"))
    assert e.key == "sipp" and "unknown key" in e.why
    e = error(write('[[directory.endpoint]]\nname = "a"\nuri = "sip:a@h"\nkinds = "phone"\n'))
    assert e.key == "directory.endpoint[0].kinds" and "unknown key" in e.why


def test_bad_role(write):
    path = write('[auth.tokens]\n"tok-alice-123456" = { principal = "alice", role = "boss" }\n')
    e = error(path)
    assert e.file == path
    assert e.key == 'auth.tokens["tok-…"].role'  # the token itself is never shown in full
    assert "dispatcher, observer, terminal, admin" in e.why and '"boss"' in e.why
    assert "tok-alice-123456" not in str(e)


def test_bad_token_entries(write):
    e = error(write('[auth.tokens]\n"short" = { principal = "a", role = "admin" }\n'))
    assert e.key.startswith("auth.tokens[") and "at least 8" in e.why
    e = error(write('[auth.tokens]\n"long-enough-1" = { principal = "a", role = "admin", x = 1 }\n'))
    assert e.key.endswith(".x") and "unknown key" in e.why
    e = error(write('[auth.tokens]\n"long-enough-1" = { role = "admin" }\n'))
    assert e.key.endswith(".principal")


@pytest.mark.parametrize("uri", [
    "http://example.org", "sip:", "sip:alice@", "sip:al ice@host", "sip:a@host:99999", "desk1",
    "tel:", "tel:+1 555",
])
def test_bad_uri_in_directory(write, uri):
    path = write(f'[[directory.endpoint]]\nname = "ok"\nuri = "sip:ok@127.0.0.1"\n'
                 f'[[directory.endpoint]]\nname = "bad"\nuri = "{uri}"\n')
    e = error(path)
    assert (e.file, e.key) == (path, "directory.endpoint[1].uri")
    assert "URI" in e.why or "port" in e.why


def test_bad_endpoint_fields(write):
    e = error(write('[[directory.endpoint]]\nname = "a"\nuri = "sip:a@h"\nkind = "pager"\n'))
    assert e.key == "directory.endpoint[0].kind" and "phone, speaker, trunk" in e.why
    e = error(write('[[directory.endpoint]]\nname = "group:x"\nuri = "sip:a@h"\n'))
    assert e.key == "directory.endpoint[0].name"
    e = error(write('[[directory.endpoint]]\nname = "a"\n'))
    assert e.key == "directory.endpoint[0].uri" and e.why == "is required"
    e = error(write('[[directory.endpoint]]\nname = "a"\nuri = "sip:a@h"\ngroups = "g"\n'))
    assert e.key == "directory.endpoint[0].groups"


def test_duplicate_endpoint_name(write):
    path = write('[[directory.endpoint]]\nname = "desk"\nuri = "sip:a@127.0.0.1"\n'
                 '[[directory.endpoint]]\nname = "yard"\nuri = "sip:y@127.0.0.1"\n'
                 '[[directory.endpoint]]\nname = "desk"\nuri = "sip:b@127.0.0.1"\n')
    e = error(path)
    assert (e.file, e.key) == (path, "directory.endpoint[2].name")
    assert 'duplicate endpoint name "desk"' in e.why and "directory.endpoint[0]" in e.why


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    e = error(path)
    assert (e.file, e.key, e.why) == (path, "(file)", "not found")


def test_invalid_toml(write):
    path = write("[sip\nport = 1\n")
    e = error(path)
    assert (e.file, e.key) == (path, "(toml)") and "invalid TOML" in e.why and "line 1" in e.why


def test_env_errors_name_the_variable():
    var = f"{ENV_PREFIX}SIP__PORT"
    e = error(None, {var: "abc"})
    assert (e.file, e.key, e.why) == ("environment", var, 'must be an integer 1..65535, got "abc"')
    e = error(None, {f"{ENV_PREFIX}SIP__PROT": "1"})
    assert e.key == f"{ENV_PREFIX}SIP__PROT" and "not a setting" in e.why and '"port"' in e.why
    e = error(None, {f"{ENV_PREFIX}SIP": "1"})
    assert e.key == f"{ENV_PREFIX}SIP" and "is a table" in e.why
    e = error(None, {f"{ENV_PREFIX}AUTH__DEV_TOKENS": "maybe"})
    assert e.why == 'must be true or false, got "maybe"'
    e = error(None, {f"{ENV_PREFIX}AUTH__TOKENS": "{ broken"})
    assert e.key == f"{ENV_PREFIX}AUTH__TOKENS" and "inline table" in e.why
    e = error(None, {f"{ENV_PREFIX}CONTROL__PING_INTERVAL_S": "nan"})
    assert "seconds" in e.why


def test_command_line_errors():
    e = error(None, overrides=["sip.port=abc"])
    assert (e.file, e.key, e.why) == ("command line", "sip.port",
                                      'must be an integer 1..65535, got "abc"')
    e = error(None, overrides=["sip.port"])
    assert e.key == "sip.port" and "section.key=value" in e.why
    e = error(None, overrides=["nosuch.key=1"])
    assert e.key == "nosuch.key" and "not a setting" in e.why


def test_error_source_is_the_winning_layer(write):
    # the file's warm_workers is fine alone; the env's max_workers makes it wrong: the error
    # points to where the offending value came from
    path = write("[sip]\nwarm_workers = 2\n")
    e = error(path, {f"{ENV_PREFIX}SIP__MAX_WORKERS": "1"})
    assert (e.file, e.key) == (path, "sip.warm_workers")
    e = error(path, overrides=["sip.warm_workers=9", "sip.max_workers=3"])
    assert (e.file, e.key) == ("command line", "sip.warm_workers")


def test_control_and_http_ports_differ():
    e = error(None, overrides=["http.port=8765"])
    assert (e.file, e.key) == ("command line", "http.port") and "control.port" in e.why


def test_broadcast_section(tmp_path):
    f = tmp_path / "gw.toml"
    f.write_text("""
[broadcast]
priorities = ["fire", "police", "info"]
retries = 1
[broadcast.profiles.hall]
headers = { "Alert-Info" = "info=alert-autoanswer", "Call-Info" = "<{uri}>;answer-after=0" }
[[broadcast.zone]]
name = "district-3"
group = "239.10.0.3"
port = 5004
codec = "G722"
[[directory.endpoint]]
name = "hall"
uri = "sip:hall@127.0.0.1:5093"
kind = "speaker"
profile = "hall"
""")
    c = load_config(str(f), {}, [])
    assert c.broadcast.priorities == ("fire", "police", "info") and c.broadcast.retries == 1
    assert c.broadcast.profile("hall").headers["Alert-Info"] == "info=alert-autoanswer"
    assert c.broadcast.zone("district-3").codec == "G722"


@pytest.mark.parametrize(
    "text, key, why",
    [
        ('[[broadcast.zone]]\nname = "z"\ngroup = "10.0.0.1"\nport = 5004\n', "broadcast.zone[0]",
         "not multicast"),
        ('[[broadcast.zone]]\nname = "z"\ngroup = "239.1.1.1"\n', "broadcast.zone[0]", "port"),
        ('[broadcast.profiles.p]\nheaders = { "Bad Name" = "x" }\n', "broadcast.profiles.p", "Bad Name"),
        ('[[directory.endpoint]]\nname = "s"\nuri = "sip:s@127.0.0.1"\nprofile = "nope"\n',
         "directory.endpoint[0].profile", "unknown speaker profile"),
    ],
)
def test_broadcast_errors_name_the_key(tmp_path, text, key, why):
    f = tmp_path / "gw.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(f), {}, [])
    assert err.value.key == key and why in err.value.why and err.value.file == str(f)


TERMINALS_TOML = """
[[directory.endpoint]]
name = "unit-7"
kind = "terminal"
display_name = "Unit 7"
groups = ["d3"]
phone = "+8613800138007"
[[directory.endpoint]]
name = "desk-1"
uri = "sip:desk1@127.0.0.1:5091"
groups = ["d3"]
[terminals]
heartbeat_interval_s = 5
missed_heartbeats = 4
"""


def test_terminals_in_the_directory_and_their_dev_tokens(write):
    c = load_config(write(TERMINALS_TOML), {}, [])
    unit = c.directory[0]
    assert (unit.kind, unit.uri, unit.phone, unit.groups) == ("terminal", None, "+8613800138007", ("d3",))
    assert c.terminals.heartbeat_interval_s == 5 and c.terminals.missed_heartbeats == 4
    # Dev tokens: one per terminal of the directory, bound to its id (the principal).
    assert ("unit-7", "terminal") in {(i.principal, i.role) for i in c.auth.tokens.values()}
    from gateway.directory import Directory
    from gateway.errors import TargetError
    d = Directory(c.directory)
    assert [e.name for e in d.resolve("group:d3")] == ["desk-1"]  # calls skip the terminal
    assert [e.name for e in d.resolve("group:d3", dialable=False)] == ["unit-7", "desk-1"]
    with pytest.raises(TargetError) as info:
        d.resolve("unit-7")
    assert info.value.reason == "not-dialable"


def test_bad_terminal_entries(write):
    e = error(write('[[directory.endpoint]]\nname = "u"\nkind = "terminal"\nphone = "13800138000"\n'))
    assert e.key == "directory.endpoint[0].phone" and "E.164" in e.why
    e = error(write('[[directory.endpoint]]\nname = "p"\nkind = "phone"\n'))  # only a terminal needs no uri
    assert e.key == "directory.endpoint[0].uri" and "required" in e.why
    e = error(write("[terminals]\nmissed_heartbeats = 0\n"))
    assert e.key == "terminals.missed_heartbeats"


def test_uploads_section(write):
    c = load_config(write('[gateway]\ndata_dir = "/srv/gw"\n[uploads]\nmax_bytes = 1048576\nmax_concurrent = 2\n'), {}, [])
    assert (c.uploads.max_bytes, c.uploads.max_concurrent, c.uploads.orphan_keep_s) == (1048576, 2, 86400)
    assert c.uploads_dir == "/srv/gw/uploads"
    c = load_config(write('[uploads]\ndir = "/var/lib/gw-files"\n'), {}, [])
    assert c.uploads_dir == "/var/lib/gw-files"
    e = error(write("[uploads]\nmax_bytes = 10\n"))
    assert e.key == "uploads.max_bytes" and "1024" in e.why
    e = error(write("[uploads]\nmax_concurent = 3\n"))
    assert e.key == "uploads.max_concurent" and "max_concurrent" in e.why


def test_request_budget_per_role(write):
    c = load_config(write('[control.request_budget]\nterminal = { rate = 2, burst = 10 }\n'), {},
                    ["control.request_budget.observer={rate = 0.5, burst = 3}"])
    budgets = c.control.request_budget
    assert (budgets["terminal"].rate, budgets["terminal"].burst) == (2, 10)
    assert (budgets["observer"].rate, budgets["observer"].burst) == (0.5, 3)
    assert budgets["dispatcher"].burst >= 100  # the defaults stay for the others
    with pytest.raises(ConfigError) as e:
        load_config(None, {}, ["control.request_budget.terminal={rate = 0, burst = 1}"])
    assert "control.request_budget.terminal" in str(e.value) and "rate" in str(e.value)
