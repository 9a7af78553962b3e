"""Ansible-native projects on the real lab (issue 10), through the CLI:

- an environment whose inventory is INI, with group_vars directories, a
  host_vars file and a vault-encrypted group_vars file (the password from
  ANSIBLE_VAULT_PASSWORD_FILE) runs plan, build and run;
- a role written the way Galaxy roles are (tests/fixtures/galaxy: facts-driven
  include_vars, meta dependencies on a Galaxy role and a collection role from
  an offline requirements.yml, handlers, templates) is baked and rolled out as
  a second pool next to web, and ``lab status`` shows both frontends;
- a marker secret in the vault file and in an --extra-var is found nowhere:
  not under the data directory, not on any command line during the bake, not
  in any output;
- ``rollout pool add`` followed by build, lab up and run works for a new role.

One lab for the module (its own environment ``ops``, bridge, subnet and ports
from the usual knobs), torn down at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from rollout.paths import DataDir
from rollout.testing.lab import lab_skip_reason, share_base_cache
from tests.fixtures import galaxy

REPO = Path(__file__).resolve().parents[2]
ENV = "ops"
PASSWORD = "ops-vault-password"
pytestmark = pytest.mark.functional


@dataclass
class Project:
    root: Path
    data: Path
    port: int
    vault_marker: str
    extra_marker: str
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "rollout", "--project", str(self.root),
                "--data-dir", str(self.data), *args, "--env", ENV]

    def cli(self, *args: str, timeout: float = 1500.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=self.env, check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        return proc

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"rollout {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok("lab", "status", "--output", "json"))
        return data


def _vault(text: str) -> str:
    secret = VaultSecret(PASSWORD.encode())
    return VaultLib([("default", secret)]).encrypt(text, secret).decode()


def _web_settings(port: int) -> dict[str, Any]:
    web = yaml.safe_load((REPO / "inventories/lab/group_vars/web.yml").read_text())["rollout"]
    web.update(pool_size=2, soak="1s")
    web["haproxy"].update(frontend_port=port, slots=6)
    return web


def _lay(root: Path, port: int, vault_marker: str) -> None:
    for name in ("roles", "playbooks", "smoke"):
        shutil.copytree(REPO / name, root / name)
    galaxy.lay(root)
    inv = root / "inventories" / ENV
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "group_vars" / "web").mkdir()
    (inv / "host_vars").mkdir()
    (inv / "hosts").write_text(
        "# An INI inventory, as most estates keep theirs.\n"
        "[lb]\nlab-lb ansible_connection=local\n\n[web]\n\n[shop]\n\n"
        "[all:vars]\nshop_size=1\n")
    # A lab of its own, beside the session's (its own bridge, subnet and ports).
    lab = {"bridge": os.environ.get("ROLLOUT_LAB_NATIVE_BRIDGE", "rtnat0"),
           "subnet": os.environ.get("ROLLOUT_LAB_NATIVE_SUBNET", "10.231.252.0/24")}
    (inv / "group_vars/all/lab.yml").write_text(yaml.safe_dump({"rollout_env": {"lab": lab}}))
    (inv / "group_vars/web/main.yml").write_text(
        yaml.safe_dump({"rollout": _web_settings(port)}))
    # The role never uses it: a secret that must leak nowhere.
    (inv / "group_vars/web/vault.yml").write_text(_vault(f"web_db_password: {vault_marker}\n"))
    (inv / "group_vars/shop.yml").write_text(yaml.safe_dump({"rollout": {
        "pool_size": "{{ shop_size }}", "soak": "1s", "smoke": {"suite": "smoke/shop"},
        "haproxy": {"backend": "shop", "frontend_port": port + 1, "slots": 4},
    }}))
    (inv / "host_vars/lab-lb.yml").write_text("haproxy_runtime: lab\n")
    (root / "vault-pass").write_text(PASSWORD + "\n")


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("ansible-native")
    base = Path(os.environ.get("ROLLOUT_TEST_DATA_DIR") or tmp_path_factory.mktemp("data"))
    data = base / f"ansible-native-{secrets.token_hex(3)}"
    shared = os.environ.get("ROLLOUT_BASE_CACHE")
    share_base_cache(DataDir(data), Path(shared) if shared else None)
    port = int(os.environ.get("ROLLOUT_LAB_NATIVE_PORT", "18270"))
    project = Project(
        root=root, data=data, port=port,
        vault_marker=f"vault-marker-{secrets.token_hex(6)}",
        extra_marker=f"extra-marker-{secrets.token_hex(6)}",
        env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(root / "vault-pass")},
    )
    _lay(root, port, project.vault_marker)
    try:
        yield project
    finally:
        project.cli("lab", "down")
        shutil.rmtree(data, ignore_errors=True)


class CmdlineWatch:
    """Reads every /proc/*/cmdline while a command runs, keeping any holding a
    marker, except ``own``: rollout's own command line, where the operator
    typed the --extra-var."""

    def __init__(self, markers: list[str], own: list[str]) -> None:
        self.markers = [m.encode() for m in markers]
        self.own = b"\0".join(a.encode() for a in own) + b"\0"
        self.found: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.scans += 1
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    line = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if line != self.own and any(m in line for m in self.markers):
                    self.found.append(line.replace(b"\0", b" ").decode(errors="replace"))

    def __enter__(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _grep(root: Path, markers: list[str]) -> list[str]:
    """Files under ``root`` holding a marker (symlinks, e.g. the base cache, not followed)."""
    patterns = [arg for m in markers for arg in ("-e", m)]
    proc = subprocess.run(["grep", "-rlF", *patterns, str(root)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.split()


def test_ini_vault_env_plans_builds_and_runs_and_the_secrets_stay_secret(ops: Project) -> None:
    # lab up bakes 1.0.0 of both pools (web, and the Galaxy-style shop with its
    # requirements installed from local tarballs) and starts their nodes.
    ops.ok("lab", "up")
    assert (ops.root / "roles/acme.motd/tasks/main.yml").is_file()
    argv = ops.argv("build", "--role", "web", "--version", "2.0.0",
                    "--extra-var", f"web_deploy_token={ops.extra_marker}")
    with CmdlineWatch([ops.vault_marker, ops.extra_marker], own=argv) as watch:
        build = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, env=ops.env)
        out, _ = build.communicate(timeout=1500)
    ops.outputs.append(out)
    assert build.returncode == 0, out
    assert watch.scans > 20
    assert sorted(set(watch.found)) == [], "a secret was on a command line during the bake"
    plan = ops.ok("plan", "--role", "web", "--version", "2.0.0", "--output", "json")
    assert "2.0.0" in plan
    ops.ok("run", "--role", "web", "--version", "2.0.0",
           "--junit", str(ops.data / "junit-web.xml"),
           "--metrics-file", str(ops.data / "metrics.prom"))
    web = [n for n in ops.status()["nodes"] if n["role"] == "web"]
    assert len(web) == 2 and {n["image"] for n in web} == {"2.0.0"}
    assert "version=2.0.0" in _get(f"http://127.0.0.1:{ops.port}/")
    images = json.loads(ops.ok("images", "--role", "web", "--output", "json"))
    manifest = json.loads(next(
        (ops.data / "images" / i["id"] / "manifest.json").read_text()
        for i in images if i["version"] == "2.0.0"))
    assert manifest["extra_vars"] == {"names": ["web_deploy_token"]}
    markers = [ops.vault_marker, ops.extra_marker]
    assert _grep(ops.data, markers) == []
    assert not [o for o in ops.outputs if any(m in o for m in markers)]


def test_a_galaxy_style_role_is_a_second_pool_next_to_web(ops: Project) -> None:
    if not ops.status()["nodes"]:
        ops.ok("lab", "up")
    ops.ok("build", "--role", "shop", "--version", "2.0.0")
    ops.ok("run", "--role", "shop", "--version", "2.0.0")
    status = ops.status()
    pools = {p["role"]: p for p in status["pools"]}
    assert set(pools) >= {"web", "shop"}
    assert status["frontend"] == pools[sorted(pools)[0]]["frontend"]  # the first pool's
    assert pools["shop"]["frontend"] == f"http://127.0.0.1:{ops.port + 1}/"
    assert len(pools["shop"]["nodes"]) == 1
    body = _get(pools["shop"]["frontend"])
    assert "welcome to the shop on Debian" in body and "version=2.0.0" in body
    assert "version=" in _get(pools["web"]["frontend"])  # web still serves
    text = ops.ok("lab", "status")
    assert f"shop frontend: http://127.0.0.1:{ops.port + 1}/" in text
    assert f"web frontend: http://127.0.0.1:{ops.port}/" in text


def test_pool_add_then_build_lab_up_and_run(ops: Project) -> None:
    ops.ok("pool", "add", "api", "--port", str(ops.port + 2))
    assert (ops.root / "roles/api/tasks/main.yml").is_file()
    ops.ok("build", "--role", "api", "--version", "1.0.0")
    ops.ok("lab", "up")  # starts the new pool's nodes from its image
    ops.ok("build", "--role", "api", "--version", "1.1.0")
    ops.ok("run", "--role", "api", "--version", "1.1.0")
    api = [n for n in ops.status()["nodes"] if n["role"] == "api"]
    assert len(api) == 2 and {n["image"] for n in api} == {"1.1.0"}
    assert "role=api version=1.1.0" in _get(f"http://127.0.0.1:{ops.port + 2}/")
