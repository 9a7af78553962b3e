"""The real lab: lab up / status / down, node lifecycle and the lab provider."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rollout.backends.lab import network, nodes, processes
from rollout.backends.lab.env import lab_up
from rollout.backends.lab.haproxy_process import haproxy_pids
from rollout.backends.lab.provider import LabProvider
from rollout.backends.lab.records import read_record
from rollout.errors import EnvironmentProblem
from rollout.inventory import load_environment
from rollout.model import Node, NodeState
from rollout.paths import DataDir
from rollout.testing.lab import LabHandle, lab_skip_reason

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.functional


def _pool_nodes(lab: LabHandle) -> list[dict[str, object]]:
    return [n for n in lab.status().to_json()["nodes"] if n["role"] == "web"]


def test_cold_lab_up_serves_from_every_node(lab: LabHandle) -> None:
    status = lab.status()
    names = {n.name for n in status.nodes}
    assert len(names) == 4
    assert all(n.state == "running" and n.lb_state == "up" for n in status.nodes)
    answered = lab.get(40)
    assert set(answered) == names, answered  # each answer names its node, all 4 answer


def test_lab_up_again_converges_without_duplicates(lab: LabHandle) -> None:
    before = _pool_nodes(lab)
    lab.up()
    after = _pool_nodes(lab)
    assert [n["name"] for n in after] == [n["name"] for n in before]
    slots = [n["slot"] for n in after]
    assert len(set(slots)) == 4 and None not in slots
    assert len({n["address"] for n in after}) == 4


def test_lab_up_restarts_a_node_whose_nspawn_died(lab: LabHandle) -> None:
    victim = lab.status().nodes[0]
    rec = read_record(lab.context, victim.name)
    assert rec is not None and rec.pid is not None
    os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while nodes.node_running(lab.context, rec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {n.name: n.state for n in lab.status().nodes}[victim.name] == "stopped"
    orphaned = processes.node_inits(lab.context, victim.name)
    assert orphaned, "the container init should outlive its SIGKILLed nspawn"
    lab.up()
    again = {n.name: n for n in lab.status().nodes}
    assert again[victim.name].state == "running" and again[victim.name].lb_state == "up"
    assert again[victim.name].address == victim.address
    assert len(again) == 4
    # The orphan was killed before the node booted again: one init, the new one.
    inits = processes.node_inits(lab.context, victim.name)
    assert len(inits) == 1 and not set(inits) & set(orphaned), (orphaned, inits)


def test_lab_up_clears_a_slot_whose_node_is_gone(lab: LabHandle) -> None:
    from rollout.backends.lab.env import _load_balancer

    pool = lab.env.pool("web")
    lb = _load_balancer(lab.data, pool)
    ghost = Node(name="web-ghost1", address="10.231.9.9", role="web", env="lab", image_id="x",
                 image_version="1", state=NodeState.GONE, created_at=0.0)
    lb.add(ghost)
    assert "10.231.9.9" in {m.target for m in lb.members()}
    lab.up()
    assert "10.231.9.9" not in {m.target for m in lb.members()}
    assert len([m for m in lb.members() if m.in_service]) == 4


def test_status_json_contract(lab: LabHandle) -> None:
    data = lab.status().to_json()
    hap = lab.env.pool("web").settings.haproxy
    assert hap is not None
    assert data["frontend"] == f"http://127.0.0.1:{hap.frontend_port}/"
    assert data["haproxy"] == "running"
    for node in data["nodes"]:
        assert set(node) >= {"name", "address", "image", "image_id", "role", "lb_state",
                             "slot", "state"}
        # The version is whatever an earlier test (the kill matrix) left the
        # pool on; the contract is that image and image_id agree.
        assert str(node["image_id"]).startswith(f"web-{node['image']}-")
    assert len({node["image_id"] for node in data["nodes"]}) == 1


def test_provider_launch_readiness_destroy(lab: LabHandle) -> None:
    pool = lab.env.pool("web")
    from rollout.backends.lab.images import LabImageStore

    images = LabImageStore(lab.data)
    provider = LabProvider(lab.context, pool, images)
    from rollout.model import LaunchSpec

    spec = LaunchSpec(name="web-ptest1", role="web", env="lab", image=images.oldest("web"),
                      rollout_id="r-test")
    node = provider.launch(spec)
    try:
        assert provider.launch(spec).address == node.address  # idempotent on the name
        deadline = time.monotonic() + 30
        probe = provider.readiness(node)
        while not probe.ready and time.monotonic() < deadline:
            time.sleep(0.2)
            probe = provider.readiness(node)
        assert probe.ready and probe.systemd == "running" and probe.http, probe
        listed = {n.name: n for n in provider.list()}
        assert listed["web-ptest1"].state is NodeState.RUNNING
        assert listed["web-ptest1"].rollout_id == "r-test"
        provider.stop(node)
        assert {n.name: n.state for n in provider.list()}["web-ptest1"] is NodeState.STOPPED
        restarted = provider.start(node)
        assert restarted.address == node.address and restarted.state is NodeState.RUNNING
    finally:
        started = time.monotonic()
        provider.destroy(node)
        assert time.monotonic() - started < 1.0  # destroy is fast
    # Until its removal is finished (a journaled step of the core) it is listed
    # as going away, never as running; list() itself changes nothing.
    assert {n.name: n.state for n in provider.list()}["web-ptest1"] is NodeState.REMOVING
    provider.finish_removal(node)  # bounded: waits for nspawn to exit
    assert "web-ptest1" not in {n.name for n in provider.list()}
    assert not network.netns_path("web-ptest1").exists()
    assert read_record(lab.context, "web-ptest1") is None


def _our_processes(data: DataDir) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(a.decode(errors="replace") for a in argv)
        if str(data.root) in text and ("systemd-nspawn" in text or "haproxy" in text):
            found.append(text)
    return found


def test_lab_down_leaves_nothing_of_ours(lab: LabHandle) -> None:
    settings = lab.env.settings.lab
    names = [n.name for n in lab.status().nodes]
    # One node's nspawn dies first: lab down must find and kill its orphaned init.
    rec = read_record(lab.context, names[0])
    assert rec is not None and rec.pid is not None
    os.kill(rec.pid, signal.SIGKILL)
    lab.down()
    assert processes.lab_inits(lab.context) == {}
    try:
        assert not any(network.netns_path(n).exists() for n in names)
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        assert settings.bridge not in links.split()
        assert not any(network.veth_names(settings.bridge, n)[0] in links for n in names)
        nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True,
                             text=True).stdout
        assert f"rollout-lab:{settings.bridge}" not in nat
        assert haproxy_pids(lab.data) == []
        assert _our_processes(lab.data) == []
        assert not (lab.data.lab / "haproxy.cfg").exists()
        assert any(lab.data.images.iterdir())  # images are the cache: kept
    finally:
        lab.up()  # later tests share the session lab


def test_lab_up_refuses_a_non_root_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*as_nobody, sys.executable, "-c", "import rollout.backends.lab.env"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"uid 65534 cannot run this checkout's Python ({sys.executable}), "
                    f"so a non-root run cannot be tried here: {probe.stderr.strip()[-200:]}")
    data = tmp_path / "data"
    tmp_path.chmod(0o777)
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from rollout.inventory import load_environment\n"
        "from rollout.errors import EnvironmentProblem\n"
        "from rollout.backends.lab.env import lab_up\nfrom rollout.paths import DataDir\n"
        f"env = load_environment(Path({str(REPO)!r}), 'lab')\n"
        "try:\n"
        f"    lab_up(Path({str(REPO)!r}), env, DataDir(Path({str(data)!r})))\n"
        "except EnvironmentProblem as exc:\n    print(exc); sys.exit(5)\n"
    )
    # A user of their own, with a home of their own: Ansible keeps its local
    # temporary files there (setpriv would leave HOME pointing at root's).
    home = Path(tempfile.mkdtemp(prefix="rollout-nobody-"))
    home.chmod(0o777)
    try:
        proc = subprocess.run(
            [*as_nobody, sys.executable, "-c", code],
            capture_output=True, text=True, timeout=60, cwd="/",
            env={**os.environ, "HOME": str(home)},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 5, proc.stderr
    assert "lab up needs root" in proc.stdout
    assert not data.exists()  # refused before anything was touched


def test_lab_up_names_the_package_of_a_missing_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from rollout.backends.lab import system

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in system.LAB_PROGRAMS:
        if program != "haproxy":
            found = system.find_program(program)
            assert found is not None
            (bin_dir / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(system, "_EXTRA_DIRS", ())
    data = tmp_path / "data"
    env = load_environment(REPO, "lab")
    with pytest.raises(EnvironmentProblem) as err:
        lab_up(REPO, env, DataDir(data))
    assert "haproxy (package haproxy)" in str(err.value)
    assert "apt-get install -y haproxy" in str(err.value)
    assert not data.exists()
