"""Configuration from the environment: defaults, overrides, edges, and a clear refusal of every bad value."""

import pytest

from service.config import VARIABLES, ConfigError, load, unknown_variables, usage


def test_defaults_apply_when_nothing_is_set():
    settings = load({})
    assert settings._asdict() == {
        "environment": "development", "port": 5000, "host": "*", "threads": 8, "connection_limit": 1000,
        "channel_timeout": 60, "receive_timeout": 5.0, "shutdown_grace": 5.0, "log_level": "INFO",
        "log_format": "text", "workers": 1, "reuse_port": False, "wsgi": "", "health_path": "/health"}


def test_each_variable_overrides_its_setting():
    settings = load({
        "APP_ENV": "production", "APP_PORT": "8080", "APP_HOST": "127.0.0.1", "APP_THREADS": "3",
        "APP_CONNECTION_LIMIT": "500", "APP_CHANNEL_TIMEOUT": "30", "APP_RECEIVE_TIMEOUT": "2.5",
        "APP_SHUTDOWN_GRACE": "2.5", "APP_LOG_LEVEL": "warning", "APP_LOG_FORMAT": "json",
        "APP_WORKERS": "3", "APP_REUSE_PORT": "on", "APP_WSGI": "myapp.web:create_app()",
        "APP_HEALTH_PATH": "/ready",
    })
    assert settings._asdict() == {
        "environment": "production", "port": 8080, "host": "127.0.0.1", "threads": 3, "connection_limit": 500,
        "channel_timeout": 30, "receive_timeout": 2.5, "shutdown_grace": 2.5, "log_level": "WARNING",
        "log_format": "json", "workers": 3, "reuse_port": True, "wsgi": "myapp.web:create_app()",
        "health_path": "/ready"}


def test_unrelated_variables_are_ignored():
    assert load({"PATH": "/bin", "APP_UNKNOWN": "x"}) == load({})


@pytest.mark.parametrize("value", ["::", "::1", "0.0.0.0", "10.1.2.3", "*"])
def test_listen_host_accepts_ip_addresses_and_star(value):
    assert load({"APP_HOST": value}).host == value


ACCEPTED_EDGES = [  # the first and last value of every range the README states
    ("APP_ENV", "a", "a"), ("APP_ENV", "9" + "x" * 63, "9" + "x" * 63), ("APP_ENV", "A.b_c-9", "A.b_c-9"),
    ("APP_PORT", "1", 1), ("APP_PORT", "65535", 65535),
    ("APP_THREADS", "1", 1), ("APP_THREADS", "256", 256),
    ("APP_CONNECTION_LIMIT", "10", 10), ("APP_CONNECTION_LIMIT", "100000", 100_000),
    ("APP_CHANNEL_TIMEOUT", "1", 1), ("APP_CHANNEL_TIMEOUT", "3600", 3600),
    ("APP_RECEIVE_TIMEOUT", "0.5", 0.5), ("APP_RECEIVE_TIMEOUT", "300", 300.0),
    ("APP_SHUTDOWN_GRACE", "0", 0.0), ("APP_SHUTDOWN_GRACE", "60", 60.0), ("APP_SHUTDOWN_GRACE", "0.25", 0.25),
    ("APP_LOG_LEVEL", "debug", "DEBUG"), ("APP_LOG_LEVEL", "ERROR", "ERROR"),
    ("APP_LOG_FORMAT", "text", "text"), ("APP_LOG_FORMAT", "json", "json"),
    ("APP_REUSE_PORT", "true", True), ("APP_REUSE_PORT", "On", True), ("APP_REUSE_PORT", "YES", True),
    ("APP_REUSE_PORT", "1", True), ("APP_REUSE_PORT", "False", False), ("APP_REUSE_PORT", "off", False),
    ("APP_REUSE_PORT", "no", False), ("APP_REUSE_PORT", "0", False),
    ("APP_WSGI", "", ""), ("APP_WSGI", "a:b", "a:b"), ("APP_WSGI", "_p.q_1.r:s.t()", "_p.q_1.r:s.t()"),
    ("APP_HEALTH_PATH", "/", "/"), ("APP_HEALTH_PATH", "/" + "~" * 255, "/" + "~" * 255),
]


@pytest.mark.parametrize(("variable", "value", "expected"), ACCEPTED_EDGES)
def test_the_edges_of_every_range_are_accepted(variable, value, expected):
    assert getattr(load({variable: value}), VARIABLES[variable].field) == expected


INVALID = {
    "APP_WORKERS": ["0", "65", "two", "", " 2", "Auto", "AUTO", "-1", "2.0", "auto ", "\uff12"],
    "APP_ENV": ["", " ", "prod uction", "-x", "_x", ".x", "a" * 65, "env\n", "é"],
    "APP_PORT": ["abc", "0", "70000", "65536", "50.5", "-1", "", " 80", "80 ", "+80", "0x50", "1e3",
                 "\uff18\uff10"],  # fullwidth digits
    "APP_HOST": ["", "localhost", "0.0.0.0:80", "256.0.0.1", "[::]", "*:*", "::ffff:127.0.0.1", "::ffff:0.0.0.0",
                 "fe80::1%eth0", "224.0.0.1", "ff02::1", "255.255.255.255"],  # parse, but cannot be bound
    "APP_THREADS": ["0", "257", "four", "", "1.5"],
    "APP_CONNECTION_LIMIT": ["0", "9", "100001", "many", ""],
    "APP_CHANNEL_TIMEOUT": ["0", "3601", "1m", ""],
    "APP_RECEIVE_TIMEOUT": ["0", "0.4", "300.5", "5s", "", "-1"],
    "APP_SHUTDOWN_GRACE": ["-1", "60.5", "61", "5s", "", "nan", "inf", "1e1", ".5"],
    "APP_LOG_LEVEL": ["", "verbose", "TRACE", "10"],
    "APP_LOG_FORMAT": ["", "JSON", "Json", "logfmt", "json ", "plain"],
    "APP_REUSE_PORT": ["", "2", "enabled", "y", "t", " on", "true ", "reuseport", "\uff11"],
    "APP_WSGI": [" ", "app", "myapp:", ":app", "my-app:app", "1app:app", "a:b()()", "a:b(x)", "a.:b", "a:b.",
                 "a:b ", "a b:c", "\u00e9:app", "a:b\n", "a/b:c"],
    "APP_HEALTH_PATH": ["", "health", "/a b", "/\u00e9", "/x\n", "//" + "x" * 255, "http://x/health"],
}


def test_every_variable_has_invalid_examples():
    assert set(INVALID) == set(VARIABLES)


@pytest.mark.parametrize(("variable", "value"),
                         [(variable, value) for variable, values in INVALID.items() for value in values])
def test_an_invalid_value_is_refused_naming_variable_value_and_what_is_allowed(variable, value):
    with pytest.raises(ConfigError) as refused:
        load({variable: value})
    message = str(refused.value)
    assert message.startswith(f"{variable}={value!r} is not valid: expected ")
    assert f"Fix or unset {variable}." in message
    assert "\n" not in message


def test_an_unknown_app_variable_is_named_with_the_closest_known_one():
    assert unknown_variables({"APP_PROT": "1", "APP_ENV": "x", "PATH": "/"}) == [
        "APP_PROT is not a setting of this service and is ignored; did you mean APP_PORT?"]
    assert unknown_variables({"APP_ZZZZZZZ": "1"})[0].startswith(
        "APP_ZZZZZZZ is not a setting of this service and is ignored; known: APP_ENV, APP_PORT")
    assert unknown_variables({"APP_ENV": "x"}) == []


def test_an_ipv4_mapped_host_is_refused_naming_the_ipv4_address_to_write():
    with pytest.raises(ConfigError) as refused:
        load({"APP_HOST": "::ffff:127.0.0.1"})
    assert "::ffff:127.0.0.1 is an IPv4-mapped IPv6 address" in str(refused.value)
    assert "write 127.0.0.1" in str(refused.value)


@pytest.mark.parametrize("name", ["APP_FOO", "APP_DEBUG", "APP_TIMEOUT", "APP_LOG", "APP_ENVIRONMENT"])
def test_an_unknown_variable_close_to_no_known_one_gets_no_guess(name):
    [warning] = unknown_variables({name: "1"})
    assert "did you mean" not in warning


@pytest.mark.parametrize(("name", "known"), [
    ("APP_THREAD", "APP_THREADS"), ("APP_LOGLEVEL", "APP_LOG_LEVEL"), ("APP_WORKER", "APP_WORKERS"),
    ("APP_CONN_LIMIT", "APP_CONNECTION_LIMIT")])
def test_a_misspelt_variable_gets_the_known_one_it_is_close_to(name, known):
    assert unknown_variables({name: "1"})[0].endswith(f"did you mean {known}?")


def test_usage_names_every_variable():
    text = usage()
    for variable in VARIABLES:
        assert f"\n  {variable} " in text
