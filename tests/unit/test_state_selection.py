"""Which state store a command uses: ``--state``, then ``ROLLOUT_STATE_URL``,
then the inventory's ``rollout_env.state``, then the data directory's SQLite
file; every command that reads or writes the journal goes there."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from rollout.app.session import open_journal, state_url
from rollout.app.workspace import Workspace
from rollout.cli.main import main
from rollout.config import EnvSettings
from rollout.errors import ConfigError, ExitCode
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.state_url import Engine
from rollout.store.lease import Lease
from rollout.store.stores import ENV_VAR, open_store

REPO = Path(__file__).resolve().parents[2]


def _ws(tmp_path: Path, *, state: str | None = None, inventory: str | None = None) -> Workspace:
    env = load_environment(REPO, "lab")
    if inventory is not None:
        env = replace(env, settings=EnvSettings(state=inventory))
    return Workspace(REPO, env, DataDir(tmp_path / "data"), state=state)


def test_the_default_is_the_data_directorys_journal(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    ws = _ws(tmp_path)
    assert state_url(ws).path == ws.data.journal
    with closing(open_journal(ws)):
        pass
    assert ws.data.journal.is_file()


def test_the_flag_wins_over_the_environment_which_wins_over_the_inventory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag, env, inv = (tmp_path / n for n in ("flag.sqlite", "env.sqlite", "inv.sqlite"))
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{env}")
    assert state_url(_ws(tmp_path, state=f"sqlite:///{flag}",
                         inventory=f"sqlite:///{inv}")).path == flag
    assert state_url(_ws(tmp_path, inventory=f"sqlite:///{inv}")).path == env
    monkeypatch.delenv(ENV_VAR)
    ws = _ws(tmp_path, inventory=f"sqlite:///{inv}")
    assert state_url(ws).path == inv
    with closing(open_journal(ws)):
        pass
    assert inv.is_file() and not ws.data.journal.exists()


def test_a_password_on_the_command_line_is_refused_without_showing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match=r"--state postgresql://ops:\*\*\*@db/rollout") as err:
        state_url(_ws(tmp_path, state="postgresql://ops:s3cret@db/rollout"))
    assert "s3cret" not in f"{err.value} {err.value.hint}"
    assert err.value.exit_code is ExitCode.USAGE
    # The same URL from the environment is accepted: the process table never shows it.
    monkeypatch.setenv(ENV_VAR, "postgresql://ops:s3cret@db/rollout")
    assert state_url(_ws(tmp_path)).engine is Engine.POSTGRESQL


def test_a_bad_url_names_where_it_came_from(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "mysql://db/rollout")
    with pytest.raises(ConfigError, match=ENV_VAR):
        state_url(_ws(tmp_path))


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return int(code) if isinstance(code, int) else 0, out, err


def test_the_cli_reads_the_shared_store(store_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Another controller holds lab/web in the shared store; ``rollout status``
    with ``--state`` (or ROLLOUT_STATE_URL), from a data directory of its own,
    sees it."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with closing(open_store(store_url)) as store:
        other = Lease(store, "lab/web", ttl=60, heartbeat=False, host="jenkins-7", pid=4242)
        other.acquire()
        base = ("--project", str(REPO), "--data-dir", str(tmp_path / "mine"))
        code, out, err = _cli(capsys, *base, "--state", store_url, "status", "--role", "web",
                              "--output", "json")
        assert code == 0, err
        lock = json.loads(out)["pools"][0]["lock"]
        assert (lock["host"], lock["pid"], lock["epoch"]) == ("jenkins-7", 4242, other.epoch)
        monkeypatch.setenv(ENV_VAR, store_url)
        code, out, err = _cli(capsys, *base, "status", "--role", "web", "--output", "json")
        assert json.loads(out)["pools"][0]["lock"]["holder"] == other.holder
        other.release()
    assert not (tmp_path / "mine" / "journal.sqlite").exists()
