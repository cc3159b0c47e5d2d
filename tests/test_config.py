from __future__ import annotations

from pathlib import Path

import pytest

from fota_server.config import Config, ConfigError, load_config


def test_defaults_bind_loopback_and_use_local_db() -> None:
    config = load_config(environ={})
    assert config.host == "127.0.0.1"
    assert config.db_path == "./fota.db"
    assert config.resolved_data_dir == Path("./fota.db-data")


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "fota.toml"
    path.write_text('[server]\nhttp_port = 9000\ncoap_port = 9001\nlog_level = "DEBUG"\n')
    config = load_config(str(path), environ={"FOTA_COAP_PORT": "9101", "FOTA_HTTP_PORT": "9100"},
                         flags={"http_port": 0})
    assert (config.http_port, config.coap_port, config.log_level) == (0, 9101, "DEBUG")


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('db_path = "x.db"\ncoap_enabled = false\n')
    config = load_config(environ={"FOTA_CONFIG": str(path)})
    assert config.db_path == "x.db" and config.coap_enabled is False


@pytest.mark.parametrize("content", ['http_port = "eighty"\n', 'no_such_key = 1\n', "not toml ===\n"])
def test_bad_config_is_refused_with_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError):
        load_config(str(path), environ={})


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Config().http_port = 1  # type: ignore[misc]


def test_enrolment_is_off_by_default_and_set_by_file_or_flag(tmp_path: Path) -> None:
    assert (Config().enroll, Config().enroll_max_devices) == ("", 1000)
    path = tmp_path / "lab.toml"
    path.write_text('[server]\nenroll = "0000123456-00001"\nenroll_max_devices = 50\n')
    config = load_config(str(path), environ={})
    assert (config.enroll, config.enroll_max_devices) == ("0000123456-00001", 50)
    assert load_config(str(path), environ={}, flags={"enroll": "other"}).enroll == "other"


def test_a_database_server_is_named_by_db_url_and_gets_its_own_data_directory(tmp_path: Path) -> None:
    path = tmp_path / "fota.toml"
    path.write_text('[server]\ndb_url = "postgresql://fota@db.internal/fota"\n')
    config = load_config(str(path), environ={})
    assert config.db_path == "postgresql://fota@db.internal/fota"
    assert config.resolved_data_dir == Path("fota-data")
    assert load_config(environ={}, flags={"db_path": str(tmp_path / "x.db")}).resolved_data_dir == \
        Path(str(tmp_path / "x.db") + "-data")
