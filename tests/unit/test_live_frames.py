"""The live view, fed by a real rollout on the fakes: its final frame shows the
pool done, every replacement's phase, the capacity against the floor; the
plain sink is kept off a terminal, with --no-progress and with JSON."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from rollout.app.rollouts import run_rollout
from rollout.cli.live import LiveView, bake_progress, live_wanted, progress
from rollout.cli.output import Output
from rollout.core.phoenix import DAY_SECONDS
from rollout.errors import RolloutFailed
from rollout.inventory import load_environment
from rollout.paths import DataDir
from rollout.testing import FakeWorld
from tests.unit.test_session import REPO, FakeWorkspace


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def frame(view: LiveView) -> str:
    console = Console(file=io.StringIO(), width=120, record=True, color_system=None)
    console.print(view)
    return console.export_text()


def fake_ws(tmp_path: Path) -> tuple[FakeWorld, FakeWorkspace]:
    fake = FakeWorld.create(4)
    fake.clock.advance(2 * DAY_SECONDS)
    return fake, FakeWorkspace(REPO, load_environment(REPO, "lab"), DataDir(tmp_path / "d"),
                               fake=fake)


def test_the_final_frame_shows_the_pool_done(tmp_path: Path) -> None:
    fake, ws = fake_ws(tmp_path)
    view = LiveView(eta=120.0, floor=4, now=fake.clock.now)
    result = run_rollout(ws, "web", version="2.0.0", clock=fake.clock, on_event=view.feed)
    text = frame(view)
    assert "4/4 nodes" in text and "done" in text
    assert "in service 4 / floor 4" in text
    for old in result.replaced:
        assert old in text
    assert f"rollout {result.id} succeeded" in text


def test_a_failed_rollout_shows_the_restore(tmp_path: Path) -> None:
    fake, ws = fake_ws(tmp_path)
    fake.smoke.fail(image=fake.new.id)
    view = LiveView(floor=4, now=fake.clock.now)
    with pytest.raises(RolloutFailed):
        run_rollout(ws, "web", version="2.0.0", clock=fake.clock, on_event=view.feed)
    text = frame(view)
    assert "restored" in text and "failed" in text
    assert "in service 4 / floor 4" in text  # the restored pool is whole again


def test_mid_rollout_capacity_follows_the_phases(tmp_path: Path) -> None:
    fake, ws = fake_ws(tmp_path)
    seen: list[int | None] = []
    view = LiveView(floor=4, now=fake.clock.now)

    def feed(event: object) -> None:
        view.feed(event)  # type: ignore[arg-type]
        seen.append(view.in_service())

    run_rollout(ws, "web", version="2.0.0", clock=fake.clock, on_event=feed)
    counts = [c for c in seen if c is not None]
    # Surge: a new node serves before its old one drains, so never below 4.
    assert min(counts) >= 4 and counts[-1] == 4


def test_the_plain_sink_off_a_terminal_with_no_progress_and_json() -> None:
    assert live_wanted(Output("text", Tty()))
    for out, enabled in ((Output("text", io.StringIO()), True), (Output("text", Tty()), False),
                         (Output("json", Tty()), True)):
        assert not live_wanted(out, enabled)
        with progress(out, enabled=enabled) as sink:
            assert sink == out.event


def test_the_bake_view_keeps_every_line_on_a_terminal() -> None:
    tty = Tty()
    with bake_progress(Output("text", tty)) as line:
        line("bake: launching builder")
        line("bake: ansible-playbook site.yml")
    screen = tty.getvalue()
    assert "bake: launching builder" in screen and "bake: ansible-playbook site.yml" in screen
    plain = io.StringIO()
    with bake_progress(Output("text", plain)) as line:
        line("bake: one")
    assert plain.getvalue() == "bake: one\n"
