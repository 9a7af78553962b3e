"""The bake pipeline on fakes: what a bake leaves behind when it succeeds, when
each step fails, and when it is asked to stop (the stop flag, or Ctrl-C)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollout.bake.pipeline import bake
from rollout.bake.request import check_request
from rollout.errors import BakeError, ConfigError, Interrupted
from rollout.model import BakeRequest, Image, Node, SmokeResult
from rollout.testing import FakeBuilder, FakeClock, FakeImageStore, FakePlaybook, FakeSmokeRunner


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for rel in ("roles/web/tasks", "roles/base/tasks", "playbooks"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "roles/web/tasks/main.yml").write_text("---\n[]\n")
    (tmp_path / "playbooks/bake.yml").write_text("- hosts: builder\n")
    return tmp_path


class World:
    def __init__(self, project: Path, tmp_path: Path) -> None:
        self.project = project
        self.logs = tmp_path / "logs"
        self.clock = FakeClock(start=1_700_000_000.0)
        self.store = FakeImageStore()
        self.builder = FakeBuilder(self.store, clock=self.clock)
        self.playbook = FakePlaybook(self.clock)
        self.smoke = FakeSmokeRunner(self.clock)
        self.events: list[str] = []
        self.stop = False

    def request(self, **kwargs: object) -> BakeRequest:
        return check_request(self.project, "web", "2.0.0", **kwargs)  # type: ignore[arg-type]

    def bake(self, request: BakeRequest | None = None) -> Image:
        return bake(self.builder, request or self.request(), smoke=self.smoke,
                    log_dir=self.logs, clock=self.clock, cancel=lambda: self.stop,
                    on_event=self.events.append, run_playbook=self.playbook)

    def nothing_left(self) -> None:
        assert self.store.images == []  # nothing registered
        assert self.builder.running == set()  # no builder
        assert self.builder.captured == {}  # no half-made image
        assert self.builder.calls[-1] == "discard"


@pytest.fixture
def world(project: Path, tmp_path: Path) -> World:
    return World(project, tmp_path)


def test_a_bake_registers_one_image_in_the_one_schema(world: World) -> None:
    image = world.bake(world.request(extra_vars={"web_port": "secret-8080"}))

    assert world.store.images == [image]
    assert world.builder.running == set() and world.builder.captured == {}
    assert world.builder.calls == ["check", "start", "capture", "register", "discard"]
    assert image.verified and image.location == f"/fake/images/{image.id}"
    m = image.manifest
    assert (m["id"], m["role"], m["version"], m["base"]) == (image.id, "web", "2.0.0",
                                                             "fake-base")
    assert m["smoke"] == {"passed": True, "summary": "5 passed", "junit": None,
                          "duration": 0.5}
    assert m["ansible"]["stats"]["ok"] == {"bake-1": 5}
    # The names of the extra vars, never their values (issue 10: secrets).
    assert m["extra_vars"] == {"names": ["web_port"]} and m["verified"] is True
    assert "secret-8080" not in json.dumps(m)
    # The injected clock throughout: boot 5 s + play 10 s + smoke 0.5 s.
    assert m["created_at_epoch"] == 1_700_000_000.0 and m["bake_seconds"] == 15.5
    assert m["created_at"] == "2023-11-14T22:13:20Z"
    (call,) = world.playbook.calls
    assert call["group"] == "builder" and call["playbook"] == "playbooks/bake.yml"
    # ...while the play gets them, and facts are gathered by default.
    assert call["extravars"] == {"web_port": "secret-8080", "rollout_role": "web",
                                 "rollout_image_version": "2.0.0",
                                 "rollout_image_id": image.id,
                                 "rollout_gather_facts": True,
                                 "rollout_gather_subset": ["all"]}
    assert world.smoke.runs == [("bake-1", image.id, True)]
    assert "task: base : packages" in world.events


def test_a_failing_task_is_named_with_the_hosts_output(world: World) -> None:
    world.playbook.fail_task("web : install nginx", "No package matching 'nginx'")
    with pytest.raises(BakeError) as err:
        world.bake()
    assert "'web : install nginx' failed" in str(err.value)
    assert "No package matching 'nginx'" in str(err.value)
    assert "nothing was registered" in str(err.value)
    world.nothing_left()
    assert world.smoke.runs == []


def test_a_failing_smoke_gate_registers_nothing(world: World) -> None:
    world.smoke.fail(summary="GET /healthz: expected status 200, got 500")
    with pytest.raises(BakeError) as err:
        world.bake()
    assert "smoke gate failed on builder bake-1" in str(err.value)
    assert "got 500" in str(err.value)
    world.nothing_left()


@pytest.mark.parametrize("step", ["start", "capture", "register"])
def test_a_failing_builder_step_discards_and_registers_nothing(world: World, step: str) -> None:
    world.builder.fail(step)
    with pytest.raises(BakeError, match=f"{step} failed"):
        world.bake()
    world.nothing_left()


def test_a_refused_check_starts_nothing(world: World) -> None:
    world.builder.fail("check", ConfigError("aws.base_ami: the bake needs a base AMI id"))
    with pytest.raises(ConfigError, match="base_ami"):
        world.bake()
    assert world.builder.calls == ["check"]
    assert world.playbook.calls == [] and world.store.images == []


def test_no_smoke_registers_an_unverified_image(world: World) -> None:
    image = world.bake(world.request(smoke=False))
    assert image.verified is False and image.manifest["verified"] is False
    assert image.manifest["smoke"] == {"skipped": True}
    assert world.smoke.runs == []


def test_the_stop_flag_mid_play_discards_and_raises_interrupted(world: World) -> None:
    def signal_arrives() -> None:
        world.stop = True

    world.playbook.during = signal_arrives
    with pytest.raises(Interrupted) as err:
        world.bake()
    assert "interrupted; the builder was removed and nothing registered" in str(err.value)
    world.nothing_left()
    assert world.smoke.runs == []


class StopDuringSmoke(FakeSmokeRunner):
    """A gate during which SIGTERM arrives."""

    def __init__(self, world: World) -> None:
        super().__init__(world.clock)
        self.world = world

    def run(self, node: Node, image: Image) -> SmokeResult:
        self.world.stop = True
        return super().run(node, image)


def test_the_stop_flag_before_capture_captures_nothing(world: World) -> None:
    world.smoke = StopDuringSmoke(world)
    with pytest.raises(Interrupted):
        world.bake()
    assert "capture" not in world.builder.calls
    world.nothing_left()


def test_ctrl_c_is_re_raised_after_the_same_cleanup(world: World) -> None:
    world.playbook.interrupting = True
    with pytest.raises(KeyboardInterrupt):
        world.bake()
    world.nothing_left()
    assert any("interrupted" in e and "nothing registered" in e for e in world.events)


def test_a_second_ctrl_c_during_cleanup_does_not_cut_it_short(world: World) -> None:
    world.builder.fail("capture")
    world.builder.interrupt("discard")
    with pytest.raises(KeyboardInterrupt):
        world.bake()
    assert world.builder.calls[-2:] == ["discard", "discard"]  # run again to its end
    world.nothing_left()


def test_a_reserved_extra_var_is_refused_before_the_builder(world: World,
                                                             project: Path) -> None:
    request = BakeRequest(project=project, role="web", version="2.0.0",
                          image_id="web-2.0.0-00000000", extra_vars={"rollout_role": "x"})
    with pytest.raises(ConfigError, match="reserved"):
        world.bake(request)
    assert world.builder.calls == []
