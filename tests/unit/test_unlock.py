"""``rollout status`` shows who holds each pool's lease; ``rollout unlock --role
R --force`` releases it for an operator who knows the holder is dead: the old
holder is fenced out, the release is journaled, and it is confirmed first."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from rollout.cli.main import main
from rollout.errors import FencedOut
from rollout.store.journal import Journal
from rollout.store.lease import Lease
from rollout.store.stores import ENV_VAR, open_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Journal, Lease]]:
    """lab/web held by a controller on another host, in the data dir's journal."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    with closing(open_store(f"sqlite:///{tmp_path / 'data' / 'journal.sqlite'}")) as store:
        lease = Lease(store, "lab/web", ttl=60, heartbeat=False, host="timer-1", pid=777)
        lease.acquire()
        yield store, lease


def _cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["--project", str(REPO), "--data-dir", str(tmp_path / "data"), *args])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_status_shows_holder_host_pid_epoch_and_expiry(
        held: tuple[Journal, Lease], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, lease = held
    code, out, _ = _cli(capsys, tmp_path, "status", "--role", "web")
    assert code == 0
    assert f"locked by {lease.holder} (host timer-1, pid 777, epoch {lease.epoch}, " \
           "expires in " in out
    code, out, _ = _cli(capsys, tmp_path, "status", "--output", "json")
    web = next(p for p in json.loads(out)["pools"] if p["role"] == "web")
    assert web["lock"]["holder"] == lease.holder and web["lock"]["epoch"] == lease.epoch
    assert 55 < web["lock"]["expires_in"] <= 60 and web["lock"]["expired"] is False


def test_unlock_needs_force_and_without_a_terminal_needs_yes(
        held: tuple[Journal, Lease], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = held
    code, _, err = _cli(capsys, tmp_path, "unlock", "--role", "web")
    assert code == 2 and "--force" in err
    code, _, err = _cli(capsys, tmp_path, "unlock", "--role", "web", "--force")
    assert code == 2 and "without confirmation" in err and "--yes" in err
    assert store.lease_status("lab/web") is not None  # still held, untouched


def test_unlock_yes_releases_fences_the_old_holder_and_is_journaled(
        held: tuple[Journal, Lease], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, lease = held
    code, out, err = _cli(capsys, tmp_path, "unlock", "--role", "web", "--force", "--yes",
                          "--output", "json")
    assert code == 0, err
    line = json.loads(out.splitlines()[-1])
    assert line["event"] == "lease_force_released" and line["holder"] == lease.holder
    assert store.lease_status("lab/web") is None
    with pytest.raises(FencedOut, match="released"):
        store.begin_step(None, None, "reap_node", "web-1", 1.0)
    released = [e for e in store.events(None) if e.kind == "lease_force_released"]
    assert len(released) == 1
    code, out, _ = _cli(capsys, tmp_path, "unlock", "--role", "web", "--force", "--yes")
    assert code == 0 and "not locked" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "released"), [("y\n", 0, True), ("n\n", 2, False)])
def test_unlock_on_a_terminal_asks_first(held: tuple[Journal, Lease], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch, answer: str,
                                         code: int, released: bool) -> None:
    store, _ = held
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    got, _, err = _cli(capsys, tmp_path, "unlock", "--role", "web", "--force")
    assert got == code and "Release it?" in err
    assert (store.lease_status("lab/web") is None) is released
