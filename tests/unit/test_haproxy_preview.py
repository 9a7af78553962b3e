"""The blue-green preview on HAProxy (``blue_green.preview``): the settings'
refusals, the rendered preview frontend and backend, and the driver keeping
the preview backend holding the main backend's idle side only.

The driver runs against two in-memory backends (``FakeHAProxy`` of
test_haproxy_lb_logic, one per backend, behind one socket); real HAProxy is
in tests/functional/test_blue_green_preview.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rollout.backends import Site
from rollout.backends.lab.backend import LabBackend
from rollout.config import Pool, PoolSettings, validate_model
from rollout.core.analysis import AnalysisContext
from rollout.drivers.analysis import expand
from rollout.drivers.haproxy.config import BackendSpec, backend_spec, render_config
from rollout.drivers.haproxy.lb import HAProxyLoadBalancer
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import ConfigError
from rollout.model import Admin, Health
from tests.unit.test_haproxy_lb_logic import FakeHAProxy, node

SOURCE = Path("inventories/lab/group_vars/web.yml")


def settings(haproxy: dict[str, Any] | None = None, **rollout: Any) -> PoolSettings:
    data = {"pool_size": 2, "strategy": "blue_green",
            "haproxy": {"backend": "web", "frontend_port": 18740, "slots": 4,
                        **(haproxy or {})}, **rollout}
    return validate_model(PoolSettings, data, str(SOURCE), prefix="rollout")


def pool(s: PoolSettings) -> Pool:
    return Pool("lab", "web", s, SOURCE)


# -- settings -------------------------------------------------------------------


def test_preview_without_a_preview_backend_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        settings(blue_green={"preview": True})
    assert "blue_green.preview needs haproxy.preview_backend" in err.value.message
    assert str(SOURCE) in err.value.message


def test_preview_on_another_haproxy_needs_its_port() -> None:
    with pytest.raises(ConfigError, match=r"needs haproxy\.preview_port"):
        settings({"preview_backend": "web_preview", "runtime": "unix:///run/haproxy.sock"},
                 blue_green={"preview": True})
    s = settings({"preview_backend": "web_preview", "runtime": "unix:///run/haproxy.sock",
                  "preview_port": 9443}, blue_green={"preview": True})
    assert s.haproxy is not None and s.haproxy.preview_frontend_port == 9443


@pytest.mark.parametrize(("haproxy", "match"), [
    ({"preview_backend": "web"}, "must not be the pool's backend"),
    ({"preview_backend": "web_preview", "preview_port": 18740}, "must differ"),
])
def test_preview_refuses_clashes(haproxy: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        settings(haproxy, blue_green={"preview": True})


def test_backend_spec_has_the_preview_only_when_asked() -> None:
    on = backend_spec(pool(settings({"preview_backend": "web_preview"},
                                    blue_green={"preview": True})))
    assert (on.preview_backend, on.preview_port) == ("web_preview", 18740 + 3000)
    off = backend_spec(pool(settings({"preview_backend": "web_preview"})))
    assert (off.preview_backend, off.preview_port) == (None, None)


def test_the_lab_backend_gives_analyses_the_preview_url() -> None:
    lab = LabBackend(Site(Path("."), None, None))  # type: ignore[arg-type]
    on = pool(settings({"preview_backend": "web_preview", "preview_port": 21000},
                       blue_green={"preview": True}))
    assert lab.preview_url(on) == "http://127.0.0.1:21000"
    assert lab.preview_url(pool(settings())) is None


# -- the rendered config --------------------------------------------------------

WEB = BackendSpec("web", "127.0.0.1", 18740, slots=4, preview_backend="web_preview",
                  preview_port=21740)


def render(*specs: BackendSpec, metrics_port: int | None = None) -> str:
    return render_config(specs, socket_path=Path("/lab/haproxy.sock"),
                         state_file=Path("/lab/haproxy.state"), metrics_port=metrics_port)


def test_render_config_has_a_preview_frontend_and_backend_with_the_same_slots() -> None:
    text = render(WEB)
    main, preview = text.split("frontend fe_web_preview\n", 1)
    assert "    bind 127.0.0.1:21740\n    default_backend web_preview\n" in preview
    assert "backend web_preview\n" in preview and "backend web_preview" not in main
    slots = [line for line in text.splitlines() if "server-template" in line]
    assert len(slots) == 2 and slots[0] == slots[1]
    assert "server-template node 1-4 empty-slot.invalid:1" in slots[0]
    # The main frontend never reaches the preview backend.
    assert main.count("default_backend") == 1 and "default_backend web\n" in main
    assert "fe_web_preview" not in render(replace(WEB, preview_backend=None,
                                                  preview_port=None))


@pytest.mark.parametrize(("specs", "metrics"), [
    ((WEB, BackendSpec("api", "127.0.0.1", 21740, slots=2)), None),
    ((WEB, BackendSpec("web_preview", "127.0.0.1", 18741, slots=2)), None),
    ((WEB,), 21740),
])
def test_render_config_refuses_a_preview_port_or_backend_taken(
        specs: tuple[BackendSpec, ...], metrics: int | None) -> None:
    with pytest.raises(ConfigError, match="twice"):
        render(*specs, metrics_port=metrics)


def test_a_preview_backend_needs_a_port() -> None:
    with pytest.raises(ConfigError, match="needs a preview_port"):
        render(replace(WEB, preview_port=None))


# -- the driver -----------------------------------------------------------------


class TwoBackends:
    """One socket, two in-memory backends; ';'-joined lines run in order."""

    url = "unix:///fake/admin.sock"

    def __init__(self) -> None:
        self.backends = {"web": FakeHAProxy("web", 4), "web_preview": FakeHAProxy("web_preview", 4)}
        self.lines: list[str] = []

    def close(self) -> None:
        pass

    def send(self, line: str) -> str:
        self.lines.append(line)
        return "".join(self._one(part) for part in line.split("; "))

    def _one(self, line: str) -> str:
        words = line.split(" ")
        name = words[3] if words[:3] == ["show", "servers", "state"] else words[2]
        return self.backends[name.partition("/")[0]].send(line)

    def pass_checks(self) -> None:
        for fake in self.backends.values():
            fake.pass_checks()


@pytest.fixture
def fake() -> TwoBackends:
    return TwoBackends()


@pytest.fixture
def lb(fake: TwoBackends) -> HAProxyLoadBalancer:
    return HAProxyLoadBalancer(HAProxyRuntime(fake), "web", service_port=8080, slots=4,
                               preview_backend="web_preview")


BLUE = [node("blue1", "10.0.0.11"), node("blue2", "10.0.0.12")]
GREEN = [node("green1", "10.0.0.21"), node("green2", "10.0.0.22")]


def preview(lb: HAProxyLoadBalancer) -> set[str]:
    """The targets the preview would send a request to (READY and UP)."""
    return {m.target for m in lb.preview_members() if m.in_service}


def serving(lb: HAProxyLoadBalancer) -> set[str]:
    return {m.target for m in lb.members() if m.in_service}


def addresses(nodes: list[Any]) -> set[str]:
    return {n.address for n in nodes}


def blue_pool(lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    for n in BLUE:
        lb.add(n)
    fake.pass_checks()


def test_the_preview_follows_the_idle_side_through_a_switch_and_back(
        lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    blue_pool(lb, fake)
    assert preview(lb) == set()
    for n in GREEN:
        lb.stage(n)
    fake.pass_checks()
    # Staged green: in the preview, not serving; blue serves, not in the preview.
    assert preview(lb) == addresses(GREEN)
    assert serving(lb) == addresses(BLUE)
    lb.switch(GREEN, BLUE)
    fake.pass_checks()
    assert serving(lb) == addresses(GREEN)
    assert preview(lb) == addresses(BLUE)  # the warm pool a rollback returns to
    lb.switch(BLUE, GREEN)  # `rollout rollback`
    fake.pass_checks()
    assert serving(lb) == addresses(BLUE) and preview(lb) == addresses(GREEN)
    for n in GREEN:
        lb.remove(n)
    assert preview(lb) == set() and serving(lb) == addresses(BLUE)
    assert all(not m.target for m in lb.preview_members())  # slots emptied, not parked


def test_retiring_blue_empties_the_preview(lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    blue_pool(lb, fake)
    for n in GREEN:
        lb.stage(n)
    fake.pass_checks()
    lb.switch(GREEN, BLUE)
    fake.pass_checks()
    lb.set_admin(BLUE[0], Admin.MAINT)
    assert preview(lb) == {BLUE[1].address}
    for n in BLUE:
        lb.remove(n)
    assert preview(lb) == set() and serving(lb) == addresses(GREEN)


def test_the_switch_takes_green_out_of_the_preview_in_its_own_line(
        lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    """A controller killed right after the switch's one exchange leaves no
    serving node in the preview: the preview's MAINT rides in the same line,
    after the main backend's commands."""
    blue_pool(lb, fake)
    for n in GREEN:
        lb.stage(n)
    fake.pass_checks()
    fake.lines.clear()
    lb.switch(GREEN, BLUE)
    batch = next(line for line in fake.lines if "; " in line)
    parts = batch.split("; ")
    main = [p for p in parts if p.startswith("set server web/")]
    held = [p for p in parts if p.startswith("set server web_preview/")]
    assert len(main) == 4 and len(held) == 2
    assert parts == main + held and all(p.endswith("state maint") for p in held)
    assert parts[0].endswith("state ready")  # green in service before blue drains


def test_a_surge_drain_does_not_enter_the_preview(
        lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    blue_pool(lb, fake)
    lb.add(GREEN[0])
    fake.pass_checks()
    lb.set_admin(BLUE[0], Admin.DRAIN)
    assert preview(lb) == set()
    lb.remove(BLUE[0])
    assert preview(lb) == set()


def test_a_node_back_in_service_leaves_the_preview_first(
        lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    blue_pool(lb, fake)
    lb.stage(GREEN[0])
    fake.pass_checks()
    assert preview(lb) == {GREEN[0].address}
    fake.lines.clear()
    lb.set_admin(GREEN[0], Admin.READY)
    first_main = next(i for i, line in enumerate(fake.lines) if " web/" in line
                      and not line.startswith("show"))
    last_preview = max(i for i, line in enumerate(fake.lines) if " web_preview/" in line)
    assert last_preview < first_main
    assert preview(lb) == set() and GREEN[0].address in serving(lb)


def test_the_preview_is_never_a_member(lb: HAProxyLoadBalancer, fake: TwoBackends) -> None:
    blue_pool(lb, fake)
    lb.stage(GREEN[0])
    fake.pass_checks()
    members = {m.target: m for m in lb.members() if m.target}
    assert set(members) == addresses(BLUE) | {GREEN[0].address}
    assert members[GREEN[0].address].admin is Admin.DRAIN
    assert members[GREEN[0].address].health is Health.UP
    assert not members[GREEN[0].address].in_service


def test_without_a_preview_nothing_reads_a_second_backend(fake: TwoBackends) -> None:
    plain = HAProxyLoadBalancer(HAProxyRuntime(fake), "web", service_port=8080, slots=4)
    for n in BLUE:
        plain.add(n)
    plain.stage(GREEN[0])
    plain.switch([GREEN[0]], [BLUE[0]])
    assert plain.preview_members() == []
    assert not any("web_preview" in line for line in fake.lines)


# -- $preview in an analysis ----------------------------------------------------

CTX = AnalysisContext("lab", "web", "r1", "web", ("10.0.0.21",), ("node3",))


def test_an_http_analysis_can_target_the_preview() -> None:
    url = expand("$preview/healthz?pool=$role", CTX, "a.url", preview="http://127.0.0.1:21740/")
    assert url == "http://127.0.0.1:21740/healthz?pool=web"
    with pytest.raises(ConfigError, match="no preview frontend") as err:
        expand("$preview/healthz", CTX, "a.url")
    assert "blue_green.preview" in (err.value.hint or "")


def test_an_http_analysis_url_may_start_with_the_preview() -> None:
    probe = {"provider": "http", "path": "a.b", "success": "result >= 0"}
    s = settings(analyses={"p": {**probe, "url": "$preview/status"},
                           "q": {**probe, "url": "${preview}"}})
    assert {n: a.url for n, a in s.analyses.items()} == {"p": "$preview/status",  # type: ignore[union-attr]
                                                         "q": "${preview}"}
    with pytest.raises(ConfigError, match="url"):
        settings(analyses={"p": {**probe, "url": "$previewx/status"}})
