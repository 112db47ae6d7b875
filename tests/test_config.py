"""Configuration from the environment: defaults, overrides, and a clear refusal of every bad value."""

import pytest

from service.config import VARIABLES, ConfigError, Settings, load


def test_defaults_apply_when_nothing_is_set():
    settings = load({})
    assert settings == Settings()
    assert (settings.environment, settings.port, settings.host) == ("development", 5000, "*")


def test_each_variable_overrides_its_setting():
    settings = load({
        "APP_ENV": "production", "APP_PORT": "8080", "APP_HOST": "127.0.0.1", "APP_THREADS": "8",
        "APP_CONNECTION_LIMIT": "500", "APP_CHANNEL_TIMEOUT": "30", "APP_SHUTDOWN_GRACE": "2.5",
        "APP_LOG_LEVEL": "warning",
    })
    assert settings == Settings(environment="production", port=8080, host="127.0.0.1", threads=8,
                                connection_limit=500, channel_timeout=30, shutdown_grace=2.5,
                                log_level="WARNING")


def test_unrelated_variables_are_ignored():
    assert load({"PATH": "/bin", "APP_UNKNOWN": "x"}) == Settings()


@pytest.mark.parametrize("value", ["::", "::1", "0.0.0.0", "10.1.2.3", "*"])
def test_listen_host_accepts_ip_addresses_and_star(value):
    assert load({"APP_HOST": value}).host == value


INVALID = {
    "APP_ENV": ["", " ", "prod uction", "-x", "a" * 65, "env\n", "é"],
    "APP_PORT": ["abc", "0", "70000", "65536", "50.5", "-1", "", " 80", "80 ", "+80", "0x50", "1e3",
                 "\uff18\uff10"],  # fullwidth digits
    "APP_HOST": ["", "localhost", "0.0.0.0:80", "256.0.0.1", "[::]", "*:*"],
    "APP_THREADS": ["0", "257", "four", "", "1.5"],
    "APP_CONNECTION_LIMIT": ["0", "9", "100001", "many", ""],
    "APP_CHANNEL_TIMEOUT": ["0", "3601", "1m", ""],
    "APP_SHUTDOWN_GRACE": ["-1", "61", "5s", "", "nan", "inf", "1e1", ".5"],
    "APP_LOG_LEVEL": ["", "verbose", "TRACE", "10"],
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
