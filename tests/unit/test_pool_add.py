"""`rollout pool add`: the files it writes, the environment it leaves (the new
pool reads back), and its refusals (nothing overwritten, nothing half-written)."""

from __future__ import annotations

import shutil
from pathlib import Path

from rollout.inventory import load_environment
from tests.inputs.corpus import run_cli

REPO = Path(__file__).resolve().parents[2]


def _project(tmp: Path) -> Path:
    project = tmp / "project"
    for name in ("inventories", "smoke", "roles", "playbooks"):
        shutil.copytree(REPO / name, project / name)
    return project


def _tree(project: Path) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes()
            for p in sorted(project.rglob("*")) if p.is_file()}


def test_pool_add_scaffolds_a_pool_that_reads_back(tmp_path: Path) -> None:
    project = _project(tmp_path)
    outcome = run_cli(["--project", str(project), "pool", "add", "shop"], tmp_path / "data")
    assert outcome.code == 0, outcome.output
    for rel in ("roles/shop/tasks/main.yml", "roles/shop/handlers/main.yml",
                "roles/shop/templates/site.conf.j2", "roles/shop/defaults/main.yml",
                "smoke/shop/conftest.py", "smoke/shop/test_shop.py",
                "inventories/lab/hosts-shop.yml", "inventories/lab/group_vars/shop.yml"):
        assert (project / rel).is_file(), rel
    env = load_environment(project, "lab")
    pool = env.pools["shop"]
    assert pool.settings.haproxy is not None
    assert pool.settings.haproxy.frontend_port == 8081  # the next after web's 8080
    assert pool.settings.smoke.suite == "smoke/shop"
    assert "web" in env.pools  # the other pool is untouched
    assert "shop_port: 80" in (project / "roles/shop/defaults/main.yml").read_text()


def test_pool_add_keeps_an_existing_role_and_takes_the_port_asked(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "roles" / "shop" / "tasks").mkdir(parents=True)
    mine = project / "roles" / "shop" / "tasks" / "main.yml"
    mine.write_text("---\n# mine\n")
    outcome = run_cli(["--project", str(project), "pool", "add", "shop", "--port", "18444"],
                      tmp_path / "data")
    assert outcome.code == 0, outcome.output
    assert mine.read_text() == "---\n# mine\n"
    assert not (project / "roles/shop/handlers").exists()
    hap = load_environment(project, "lab").pools["shop"].settings.haproxy
    assert hap is not None and hap.frontend_port == 18444


def test_pool_add_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "smoke" / "shop").mkdir()
    before = _tree(project)
    for argv in (["pool", "add", "shop"],  # smoke/shop exists
                 ["pool", "add", "web"],  # the pool exists
                 ["pool", "add", "api", "--port", "8080"],  # web's frontend port
                 ["pool", "add", "Bad;Name"]):
        outcome = run_cli(["--project", str(project), *argv], tmp_path / "data")
        assert outcome.code == 2, (argv, outcome.output)
        assert _tree(project) == before, argv
    outcome = run_cli(["--project", str(project), "pool", "add", "shop"], tmp_path / "data")
    assert str(project / "smoke" / "shop") in outcome.output and "overwrite" in outcome.output
