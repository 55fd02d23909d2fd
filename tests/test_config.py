from __future__ import annotations

from pathlib import Path

import pytest

import moetrack
from moetrack import ConfigurationError
from moetrack._config import Config


def test_data_centers_and_endpoint_override() -> None:
    assert Config.build("a", "k", environ={}).base_url == "https://api-01.moengage.com"
    for dc in ("01", "02", "03"):
        assert (
            Config.build("a", "k", data_center=dc, environ={}).base_url
            == f"https://api-{dc}.moengage.com"
        )
    assert (
        Config.build("a", "k", endpoint="https://proxy.example/", environ={}).base_url
        == "https://proxy.example"
    )
    with pytest.raises(ConfigurationError, match="data_center"):
        Config.build("a", "k", data_center="04", environ={})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8700", "http://127.9.9.9", "http://localhost:1", "http://[::1]:80"]
)
def test_plain_http_only_to_loopback(url: str) -> None:
    assert Config.build("a", "k", endpoint=url, environ={}).base_url == url


@pytest.mark.parametrize(
    "url", ["http://api-01.moengage.com", "http://10.0.0.1", "ftp://127.0.0.1", "nonsense"]
)
def test_other_plain_endpoints_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="endpoint"):
        Config.build("a", "k", endpoint=url, environ={})


def test_environment_variables_fill_what_is_not_given() -> None:
    env = {
        "MOETRACK_APP_ID": "ENVAPP",
        "MOETRACK_API_KEY": "env-key",
        "MOETRACK_DATA_CENTER": "03",
    }
    config = Config.build(environ=env)
    assert (config.app_id, config.api_key, config.base_url) == (
        "ENVAPP",
        "env-key",
        "https://api-03.moengage.com",
    )
    assert Config.build("ARG", environ=env).app_id == "ARG"
    assert (
        Config.build(environ={**env, "MOETRACK_ENDPOINT": "http://127.0.0.1:9"}).base_url
        == "http://127.0.0.1:9"
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_batch_bytes", 100_001),
        ("max_batch_bytes", 10),
        ("max_batch_size", 0),
        ("flush_interval", -1),
        ("timeout", float("nan")),
        ("users_per_minute", 0),
        ("on_full", "wait"),
        ("before_send", 3),
        ("no_such_option", 1),
    ],
)
def test_bad_options_name_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Config.build("a", "k", environ={}, **{option: value})


def test_the_key_never_shows_in_reprs() -> None:
    config = Config.build("APP", "super-secret-key", environ={})
    client = moetrack.Client("APP", "super-secret-key", endpoint="http://127.0.0.1:9")
    try:
        for text in (repr(config), str(config), repr(client)):
            assert "super-secret-key" not in text
        assert "Basic" in config.headers()["Authorization"]
    finally:
        client.shutdown(0.1)


def test_an_unknown_option_is_named_with_where_the_options_are_listed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config.build("APP", "key", flush_intervall=2.0)
    message = str(caught.value)
    assert message.startswith("flush_intervall: not an option of moetrack")
    reference = message.rsplit("see ", 1)[1].rstrip(")")
    assert (Path(__file__).parents[1] / reference).is_file(), reference
