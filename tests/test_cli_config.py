"""The agent's configuration, resolved without starting an agent: each layer
(config file, CLUSTERMEMBER_* environment, flags) alone, their precedence,
secrets by value or from a file, and the messages for what is wrong."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import socket
from pathlib import Path

import pytest

from clustermember import ClusterConfig
from clustermember.__main__ import agent_config, build_parser, main
from clustermember._agent import agent_settings, auth_settings, env_names, resolve_settings
from clustermember._cli import UsageError


def settings(argv: list[str], environ: dict[str, str] | None = None) -> dict[str, object]:
    """The agent's resolved settings for a command line and an environment."""
    args = build_parser().parse_args(["agent", *argv])
    return agent_settings(vars(args), environ or {})


def agent_on_a_held_port(tmp_path: Path, argv: list[str]) -> int:
    """main() for an insecure agent with argv, bound to a port another
    socket holds: an error refused before the node binds is that error, not
    the port's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{held.getsockname()[1]}"
        control = str(tmp_path / "a.sock")
        return main(["agent", "--insecure", "--bind", addr, "--control", control, *argv])


def b64key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        'bind = "127.0.0.1:7001"\n'
        'join = ["127.0.0.1:7002", "127.0.0.1:7003"]\n'
        "join_timeout = 5\n"
        'node-id = "from-file"\n'
        'profile = "wan"\n'
        'log-level = "debug"\n'
        "fault-drop = 0.25\n"
        'control = "/tmp/from-file.sock"\n'
        "insecure = true\n"
        "[tag]\n"
        'role = "db"\n'
        'zone = "eu"\n'
    )
    return path


def test_defaults_when_nothing_is_given() -> None:
    s = settings([])
    assert s["bind"] == "127.0.0.1:7946" and s["join"] == [] and s["join-timeout"] == 30.0
    assert s["log-level"] == "info" and s["profile"] == "lan" and s["insecure"] is False
    assert s["tag"] == {} and s["key-file"] is None and s["control"] is None


def test_every_option_from_a_toml_file(toml: Path) -> None:
    s = settings(["--config", str(toml)])
    assert s["bind"] == "127.0.0.1:7001"
    assert s["join"] == ["127.0.0.1:7002", "127.0.0.1:7003"]
    assert s["join-timeout"] == 5.0 and s["node-id"] == "from-file"
    assert s["profile"] == "wan" and s["log-level"] == "debug" and s["fault-drop"] == 0.25
    assert s["control"] == "/tmp/from-file.sock" and s["insecure"] is True
    assert s["tag"] == {"role": "db", "zone": "eu"}
    # The file may also be named by the environment.
    assert settings([], {"CLUSTERMEMBER_CONFIG": str(toml)})["node-id"] == "from-file"


def test_every_option_from_the_environment(tmp_path: Path) -> None:
    env = {
        "CLUSTERMEMBER_BIND": "127.0.0.1:7101",
        "CLUSTERMEMBER_JOIN": "127.0.0.1:7102, 127.0.0.1:7103",
        "CLUSTERMEMBER_JOIN_TIMEOUT": "7.5",
        "CLUSTERMEMBER_NODE_ID": "from-env",
        "CLUSTERMEMBER_TAG": "role=web,zone=us",
        "CLUSTERMEMBER_KEYRING_FILE": "/keys/ring",
        "CLUSTERMEMBER_TLS_CA": "ca.pem",
        "CLUSTERMEMBER_TLS_CERT": "cert.pem",
        "CLUSTERMEMBER_TLS_KEY": "key.pem",
        "CLUSTERMEMBER_INSECURE": "yes",
        "CLUSTERMEMBER_PROFILE": "local",
        "CLUSTERMEMBER_LOG_LEVEL": "WARNING",
        "CLUSTERMEMBER_FAULT_DROP": "0.5",
        "CLUSTERMEMBER_CONTROL": "127.0.0.1:7374",
        "CLUSTERMEMBER_KEY_FILE": "/keys/key",
    }
    s = settings([], env)
    assert s["bind"] == "127.0.0.1:7101" and s["join"] == ["127.0.0.1:7102", "127.0.0.1:7103"]
    assert s["join-timeout"] == 7.5 and s["node-id"] == "from-env"
    assert s["tag"] == {"role": "web", "zone": "us"}
    assert s["key-file"] == "/keys/key" and s["keyring-file"] == "/keys/ring"
    assert (s["tls-ca"], s["tls-cert"], s["tls-key"]) == ("ca.pem", "cert.pem", "key.pem")
    assert s["insecure"] is True and s["profile"] == "local" and s["log-level"] == "warning"
    assert s["fault-drop"] == 0.5 and s["control"] == "127.0.0.1:7374"
    # An empty variable counts as unset.
    assert settings([], {"CLUSTERMEMBER_BIND": ""})["bind"] == "127.0.0.1:7946"


def test_every_option_from_flags() -> None:
    s = settings(
        "--bind 127.0.0.1:7201 --join 127.0.0.1:7202 --join-timeout 9 --node-id flag "
        "--tag role=cache --key-file k --profile local --log-level error --fault-drop 0.1 "
        "--control /tmp/f.sock --insecure --event-coalesce 2.5".split()
    )
    assert s["bind"] == "127.0.0.1:7201" and s["join"] == ["127.0.0.1:7202"]
    assert s["join-timeout"] == 9.0 and s["node-id"] == "flag" and s["tag"] == {"role": "cache"}
    assert s["key-file"] == "k" and s["profile"] == "local" and s["log-level"] == "error"
    assert s["fault-drop"] == 0.1 and s["control"] == "/tmp/f.sock" and s["insecure"] is True
    assert s["event-coalesce"] == 2.5


def test_flags_win_over_the_environment_which_wins_over_the_file(toml: Path) -> None:
    env = {"CLUSTERMEMBER_BIND": "127.0.0.1:7101", "CLUSTERMEMBER_NODE_ID": "from-env"}
    env["CLUSTERMEMBER_TAG"] = "zone=us"
    s = settings(["--config", str(toml), "--bind", "127.0.0.1:7201", "--tag", "rack=r1"], env)
    assert s["bind"] == "127.0.0.1:7201"  # flag over environment over file
    assert s["node-id"] == "from-env"  # environment over file
    assert s["profile"] == "wan"  # file over default
    assert s["join-timeout"] == 5.0
    # Tags merge key by key, the higher layer winning a key.
    assert s["tag"] == {"role": "db", "zone": "us", "rack": "r1"}


def test_a_secret_by_value_or_from_a_file(tmp_path: Path) -> None:
    key = b64key()
    keyfile = tmp_path / "cluster.key"
    keyfile.write_text(b64key() + "\n")
    by_value = auth_settings(settings([], {"CLUSTERMEMBER_KEY": key}))
    assert by_value == {"cluster_key": key}
    from_file = auth_settings(settings([], {"CLUSTERMEMBER_KEY_FILE": str(keyfile)}))
    assert from_file == {"cluster_key": keyfile.read_text().strip()}
    ring = auth_settings(settings([], {"CLUSTERMEMBER_KEYRING": f"{key},{key}"}))
    assert ring == {"keyring": [key, key]}
    # A key file given by flag replaces the environment's key by value.
    s = settings(["--key-file", str(keyfile)], {"CLUSTERMEMBER_KEY": key})
    assert s["key"] is None and auth_settings(s)["cluster_key"] != key
    with pytest.raises(UsageError, match="CLUSTERMEMBER_KEY or CLUSTERMEMBER_KEY_FILE"):
        settings([], {"CLUSTERMEMBER_KEY": key, "CLUSTERMEMBER_KEY_FILE": str(keyfile)})
    with pytest.raises(ValueError, match="CLUSTERMEMBER_KEY is not valid base64"):
        auth_settings(settings([], {"CLUSTERMEMBER_KEY": "not a key!"}))


def test_unknown_or_bad_options_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('bind = "127.0.0.1:1"\nseeds = ["127.0.0.1:2"]\n')
    with pytest.raises(UsageError, match=r"unknown option 'seeds'; the options are bind, join"):
        settings(["--config", str(path)])
    path.write_text('join-timeout = "soon"\n')
    with pytest.raises(UsageError, match=r"bad.toml: join-timeout must be a number"):
        settings(["--config", str(path)])
    path.write_text("bind = \n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        settings(["--config", str(path)])
    with pytest.raises(UsageError, match="cannot read config file"):
        settings(["--config", str(tmp_path / "missing.toml")])
    with pytest.raises(UsageError, match="CLUSTERMEMBER_INSECURE: insecure must be true or false"):
        settings([], {"CLUSTERMEMBER_INSECURE": "maybe"})
    with pytest.raises(UsageError, match="CLUSTERMEMBER_PROFILE: profile must be one of"):
        settings([], {"CLUSTERMEMBER_PROFILE": "fast"})
    with pytest.raises(UsageError, match="CLUSTERMEMBER_EVENT_COALESCE: event-coalesce must be"):
        settings([], {"CLUSTERMEMBER_EVENT_COALESCE": "-1"})
    assert settings([], {"CLUSTERMEMBER_EVENT_COALESCE": "0.5"})["event-coalesce"] == 0.5
    assert resolve_settings({"fault-drop": 0.5}, {})["fault-drop"] == 0.5


def test_no_key_names_the_flags_not_the_python_arguments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("CLUSTERMEMBER_")]:
        monkeypatch.delenv(name)
    assert main(["agent", "--bind", "127.0.0.1:0"]) == 1
    err = capsys.readouterr().err
    assert "--key-file" in err and "--insecure" in err and err.count("\n") == 1
    assert "cluster_key=" not in err and "insecure=True" not in err
    assert main(["agent", "--tls-ca", "ca.pem"]) == 1
    assert "needs all of --tls-ca, --tls-cert and --tls-key" in capsys.readouterr().err


def test_a_join_timeout_out_of_range_is_named_as_given_before_anything_binds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = "must be a number of seconds from 0.1 to 3,600, not "
    for value in ("0", "1e9", "nan", "-1"):
        with pytest.raises(UsageError, match=rf"^--join-timeout {wanted}"):
            settings(["--join-timeout", value])
    with pytest.raises(
        UsageError, match=rf"^CLUSTERMEMBER_JOIN_TIMEOUT: join-timeout {wanted}'0'$"
    ):
        settings([], {"CLUSTERMEMBER_JOIN_TIMEOUT": "0"})
    path = tmp_path / "agent.toml"
    path.write_text("join_timeout = 1e9\n")
    with pytest.raises(UsageError, match=rf"agent.toml: join_timeout {wanted}1000000000.0$"):
        settings(["--config", str(path)])
    assert settings(["--join-timeout", "0.1"])["join-timeout"] == 0.1
    # Refused before the node binds its port.
    assert agent_on_a_held_port(tmp_path, ["--join-timeout", "0"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: --join-timeout {wanted}0.0\n", err


def test_an_unknown_clustermember_variable_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(
        UsageError,
        match=r"CLUSTERMEMBER_CONFIG_FILE: unset it \(did you mean CLUSTERMEMBER_CONFIG\?\)$",
    ):
        settings([], {"CLUSTERMEMBER_CONFIG_FILE": "agent.toml"})
    with pytest.raises(UsageError, match=r"CLUSTERMEMBER_TLS_KEY_FILE: .*CLUSTERMEMBER_TLS_KEY\?"):
        settings([], {"CLUSTERMEMBER_TLS_KEY_FILE": "key.pem"})
    with pytest.raises(UsageError) as err:
        settings([], {"CLUSTERMEMBER_BOGUS": "1"})
    assert str(err.value).startswith("unknown environment variable CLUSTERMEMBER_BOGUS")
    assert "CLUSTERMEMBER_BIND" in str(err.value) and "CLUSTERMEMBER_CONFIG" in str(err.value)
    # Every name the agent, the client commands and the docs use is known;
    # an empty variable counts as unset; other prefixes are not ours.
    known = {n: "" for n in env_names()} | {"CLUSTERMEMBER_BOGUS": "", "CM_SANITIZE": "1"}
    assert settings([], known)["bind"] == "127.0.0.1:7946"
    assert "CLUSTERMEMBER_CONTROL" in env_names()


def test_settings_change_the_profile_key_by_key_in_every_layer(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("insecure = true\n[set]\nprobe_interval = 2\ncoordinates = false\n")
    env = {"CLUSTERMEMBER_SET": "probe_timeout=0.4, probe_interval=3"}
    s = settings(["--config", str(path), "--set", "probe_interval=1.5"], env)
    assert s["set"] == {"probe_interval": 1.5, "coordinates": False, "probe_timeout": 0.4}
    config = agent_config(settings(["--insecure", "--profile", "local", "--set", "history=3"]))
    local = ClusterConfig.local(insecure=True)
    assert config.history == 3 and local.history != 3
    # The rest of the profile stays as it was.
    assert config.probe_interval == local.probe_interval
    assert config.suspicion_mult == local.suspicion_mult
    assert agent_config(s).probe_interval == 1.5 and agent_config(s).coordinates is False


def test_the_confirmations_a_suspicion_awaits_are_a_setting_apart_from_its_multiplier() -> None:
    """--set suspicion_confirmations reaches the core's settings on its own;
    changing the multiplier leaves it; past 16 it is refused by name."""
    config = agent_config(
        settings(["--insecure", "--set", "suspicion_mult=2", "--set", "suspicion_confirmations=3"])
    )
    core = config.protocol_settings()
    lan = ClusterConfig.lan(insecure=True)
    assert (lan.suspicion_mult, lan.suspicion_confirmations) != (2, 3)
    assert (core["suspicion_mult"], core["suspicion_confirmations"]) == (2, 3)
    assert agent_config(
        settings(["--insecure", "--set", "suspicion_mult=6"])
    ).suspicion_confirmations == (lan.suspicion_confirmations)
    with pytest.raises(UsageError, match="refused.*suspicion_confirmations must be at most 16"):
        agent_config(settings(["--insecure", "--set", "suspicion_confirmations=17"]))


def test_a_bad_setting_is_named_before_anything_binds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "probe_intervl=1": r"'probe_intervl' is not a setting \(did you mean probe_interval",
        "probe_interval=soon": "probe_interval must be a number, not 'soon'",
        "history=1.5": "history must be a whole number, not '1.5'",
        "coordinates=maybe": "coordinates must be true or false",
        "node_id=x": "node_id is not set this way: use --node-id",
        "phi_threshold=9": "phi_threshold is not set this way",
        "history=--5": "history must be a whole number, not '--5'",
        "event_queue_size=4294967296": "event_queue_size must be from 0 to 4,294,967,295",
        "probe_interval": "'probe_interval' is not NAME=VALUE",
    }
    for arg, message in cases.items():
        with pytest.raises(UsageError, match=rf"^--set: {message}"):
            settings(["--set", arg])
    with pytest.raises(UsageError, match=r"^CLUSTERMEMBER_SET: set: history must be a whole"):
        settings([], {"CLUSTERMEMBER_SET": "history=x"})
    # In range only once combined with the profile: refused by the config,
    # named as a setting, before the node binds its port, and before the
    # agent sets up its logging (a refused command line changes nothing).
    log = logging.getLogger("clustermember")
    before = (list(log.handlers), log.propagate, log.level)
    assert agent_on_a_held_port(tmp_path, ["--set", "probe_timeout=5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: setting refused (--set): ") and "probe_timeout" in err, err
    assert (list(log.handlers), log.propagate, log.level) == before
    # An error of another option is named as that option, settings or not.
    with pytest.raises(ValueError, match="CLUSTERMEMBER_KEY is not valid base64"):
        agent_config(settings(["--set", "history=3"], {"CLUSTERMEMBER_KEY": "not a key!"}))
