"""The dashboard's server on the fakes: what it shows, that it refuses every
write and changes nothing, and that beyond loopback it needs its token."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rollout.app.ui.server import Dashboard, check_listen, parse_listen, read_token
from rollout.app.ui.timeline import in_service
from rollout.config import Strategy
from rollout.core.state import Phase
from rollout.errors import ConfigError, JournalError
from tests.ui_world import WorldSources, rollout, world

TOKEN = "s3cret-token-0123456789"


def serve(sources: WorldSources, token: str | None = None) -> Iterator[str]:
    server = Dashboard(("127.0.0.1", 0), sources, token=token, refresh=0.2)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def done(tmp_path: Path) -> WorldSources:
    made = world(3)
    ctl = rollout(made, tmp_path)
    ctl.run(made.new)
    ctl.journal.close()
    return WorldSources(made, tmp_path)


@pytest.fixture
def url(done: WorldSources) -> Iterator[str]:
    yield from serve(done)


def tree(root: Path) -> dict[str, str]:
    """Every file's digest, except SQLite's shared-memory index (-shm) and an
    EMPTY write-ahead log (-wal): a reader of a WAL database opens both, creating
    them empty when no writer has them open. A -wal with content is kept."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


def test_the_page_shows_pools_rollouts_history_and_images(url: str, done: WorldSources) -> None:
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for node in done.world.provider.live():
        assert node.name in page.text
    state = requests.get(url + "api/state", timeout=5).json()
    [pool] = state["pools"]
    assert pool["in_service"] == 3 and {n["image"] for n in pool["nodes"]} == {done.world.new.id}
    [live] = state["rollouts"]
    assert live["status"] == "succeeded" and len(live["nodes"]) == 3
    assert all(n["steps"] and all(s["ok"] for s in n["steps"]) for n in live["nodes"])
    assert [h["id"] for h in state["history"]] == [live["id"]]
    assert live["capacity"][0][1] == 3 and min(c for _, c in live["capacity"]) >= live["floor"]
    assert {i["id"] for i in state["images"]} == {done.world.old.id, done.world.new.id}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_writes_are_refused_and_nothing_in_the_data_dir_changes(
        url: str, done: WorldSources, tmp_path: Path, method: str) -> None:
    before = tree(tmp_path)
    answer = requests.request(method, url + "api/state", data=b"{}", timeout=5)
    assert answer.status_code == 405
    for path in ("", "api/state", "api/live", "static/ui.js"):
        assert requests.get(url + path, timeout=5).status_code == 200
    assert tree(tmp_path) == before


def test_the_read_only_journal_refuses_writes(done: WorldSources) -> None:
    journal = done.journal()
    try:
        [record] = journal.history()
        with pytest.raises(JournalError, match="readonly"):
            journal.begin_step(record.state.id, 0, "launch", "x", 0.0)
    finally:
        journal.close()


def test_a_missing_journal_is_not_created(tmp_path: Path) -> None:
    sources = WorldSources(world(2), tmp_path)
    for url in serve(sources):
        assert requests.get(url + "api/state", timeout=5).json()["rollouts"] == []
    assert list(tmp_path.iterdir()) == []


def test_with_a_token_requests_need_it(done: WorldSources) -> None:
    for url in serve(done, token=TOKEN):
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url + "login?token=wrong", timeout=5).status_code == 403
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(url + "api/state", headers=bearer, timeout=5).status_code == 200
        browser = requests.Session()
        login = browser.get(url + f"login?token={TOKEN}", timeout=5)
        assert login.status_code == 200 and login.url == url  # redirected, cookie set
        assert browser.get(url + "api/live", timeout=5).status_code == 200


def test_beyond_loopback_a_token_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        check_listen("0.0.0.0", None)
    check_listen("0.0.0.0", TOKEN)
    check_listen("::1", None)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    with pytest.raises(ConfigError, match="--listen"):
        parse_listen("8765")
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n")
    assert read_token(file, {}) == TOKEN
    assert read_token(None, {"ROLLOUT_UI_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(ConfigError, match="16 characters"):
        read_token(None, {"ROLLOUT_UI_TOKEN": "short"})


@pytest.mark.parametrize(("phase", "strategy", "change"), [
    (Phase.PENDING, Strategy.SURGE, 0), (Phase.BOOTING, Strategy.SURGE, 0),
    (Phase.BOOTING, Strategy.IN_PLACE, -1), (Phase.PARKING, Strategy.IN_PLACE, -1),
    (Phase.DRAINING, Strategy.SURGE, 0), (Phase.DONE, Strategy.SURGE, 0),
    (Phase.RESTORED, Strategy.IN_PLACE, 0),
])
def test_capacity_change_per_phase(phase: Phase, strategy: Strategy, change: int) -> None:
    assert in_service(phase, strategy) == change


def test_the_live_endpoint_is_json(url: str) -> None:
    live = json.loads(requests.get(url + "api/live", timeout=5).text)
    assert live["rollouts"][0]["status"] == "succeeded" and "<svg" in live["live"]
