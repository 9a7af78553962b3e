"""State URLs: engine selection, masked display, bad URLs, the inventory key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.config import EnvSettings, validate_model
from rollout.errors import ConfigError
from rollout.state_url import Engine, parse_state_url
from rollout.store.stores import open_store, resolve_url


@pytest.mark.parametrize(("text", "engine", "shown"), [
    ("sqlite:///var/lib/rollout/journal.sqlite", Engine.SQLITE,
     "sqlite:///var/lib/rollout/journal.sqlite"),
    ("postgresql://rollout:s3cret@db.internal:5432/rollout", Engine.POSTGRESQL,
     "postgresql://rollout:***@db.internal:5432/rollout"),
    ("postgresql+psycopg://rollout@db/rollout?password=s3cret", Engine.POSTGRESQL,
     "postgresql://rollout@db/rollout?password=%2A%2A%2A"),
    ("postgres:///rollout", Engine.POSTGRESQL, "postgresql:///rollout"),
])
def test_urls_pick_the_engine_and_never_show_the_password(text: str, engine: Engine,
                                                           shown: str) -> None:
    url = parse_state_url(text)
    assert url.engine is engine and url.display == shown and "s3cret" not in url.display
    if engine is Engine.POSTGRESQL:
        assert url.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize("text", ["mysql://u:s3cret@h/db", "postgresql+psycopg2://u:s3cret@h/d",
                                  "sqlite://", "sqlite:///:memory:", "not a url"])
def test_a_bad_url_is_a_config_error_naming_the_key_without_the_password(text: str) -> None:
    with pytest.raises(ConfigError, match=r"inventories/prod/group_vars/all\.yml: "
                       r"rollout_env: state: ") as err:
        validate_model(EnvSettings, {"state": text}, "inventories/prod/group_vars/all.yml",
                       "rollout_env")
    assert "s3cret" not in str(err.value)
    with pytest.raises(ConfigError, match="--state"):
        resolve_url(text, Path("/unused"))


def test_the_default_is_the_data_directorys_sqlite_file(tmp_path: Path) -> None:
    assert resolve_url(None, tmp_path / "journal.sqlite").path == tmp_path / "journal.sqlite"
    store = open_store(f"sqlite:///{tmp_path / 'j.sqlite'}")
    assert store.path == tmp_path / "j.sqlite" and (tmp_path / "j.sqlite").exists()
    env = validate_model(EnvSettings, {"state": "postgresql://u:s3cret@h/db"}, "all.yml",
                         "rollout_env")
    assert "s3cret" not in repr(env)
