"""The inventory as Ansible reads it: sources in every format, group_vars and
host_vars as files or directories, Ansible's precedence, templating, vault
(files and inline values, every way of giving the password), the project's
ansible.cfg, and the errors: exit 2 naming the file."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret

from rollout.errors import ConfigError
from rollout.inventory import load_environment
from rollout.model import VaultOptions

PASSWORD = "correct horse"
POOL = {"pool_size": 2, "soak": "1s", "haproxy": {"backend": "web", "frontend_port": 18201}}


def _vault(text: str, password: str = PASSWORD) -> str:
    secret = VaultSecret(password.encode())
    return VaultLib([("default", secret)]).encrypt(text, secret).decode()


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "roles").mkdir(exist_ok=True)
    return root


def _pool_yaml(**changes: object) -> str:
    return json.dumps({"rollout": {**POOL, **changes}})


INI = """\
[lb]
lab-lb ansible_connection=local

[web]

[api]

[all:vars]
web_count=3
"""


def test_ini_inventory_with_group_vars_directory_json_and_templating(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts": INI,
        "inventories/prod/group_vars/all.yml": "rollout_env:\n  lab:\n    bridge: rtest0\n",
        # A directory of variable files, one of them templated from the inventory.
        "inventories/prod/group_vars/web/main.yml":
            'rollout:\n  pool_size: "{{ web_count }}"\n  soak: 1s\n'
            "  haproxy: {backend: web, frontend_port: 18201}\n",
        "inventories/prod/group_vars/web/other.yaml": "unrelated: 1\n",
        # JSON, and a file without extension.
        "inventories/prod/group_vars/api.json": json.dumps({"rollout": {
            **POOL, "haproxy": {"backend": "api", "frontend_port": 18202}}}),
        "inventories/prod/group_vars/lb": "haproxy_runtime: lab\n",
        "inventories/prod/host_vars/lab-lb.yml": "ansible_python_interpreter: /usr/bin/python3\n",
    })
    env = load_environment(project, "prod")
    assert sorted(env.pools) == ["api", "web"]
    assert env.pools["web"].settings.pool_size == 3  # "{{ web_count }}" templated
    assert env.pools["web"].source == project / "inventories/prod/group_vars/web/main.yml"
    assert env.pools["api"].source == project / "inventories/prod/group_vars/api.json"
    assert env.settings.lab.bridge == "rtest0"
    assert env.inventory == project / "inventories/prod/hosts"


def test_ansible_precedence_child_group_over_parent_over_all(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts.yml": """\
            all:
              children:
                frontends:
                  children:
                    web: {}
            """,
        # all < parent group < the group itself; the key holds a whole mapping and
        # Ansible replaces it (hash_behaviour replace), so web's own value wins.
        "inventories/prod/group_vars/all.yml": "web_soak: 9s\nsize: 1\n",
        "inventories/prod/group_vars/frontends.yml": "web_soak: 4s\nsize: 2\n",
        "inventories/prod/group_vars/web.yml":
            'rollout:\n  pool_size: "{{ size }}"\n  soak: "{{ web_soak }}"\n'
            "  haproxy: {backend: web, frontend_port: 18201}\n",
    })
    env = load_environment(project, "prod")
    assert list(env.pools) == ["web"]  # frontends sets no rollout key of its own
    assert env.pools["web"].settings.pool_size == 2
    assert env.pools["web"].settings.soak == 4.0


def test_inventory_vars_and_group_vars_files_merge_by_ansible_rules(tmp_path: Path) -> None:
    # group_vars files beat the inventory's own group vars, as in Ansible.
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n[web:vars]\nsize=3\nsoak_for=2s\n",
        "inventories/prod/group_vars/web.yml":
            'size: 4\nrollout:\n  pool_size: "{{ size }}"\n  soak: "{{ soak_for }}"\n'
            "  haproxy: {backend: web, frontend_port: 18201}\n",
    })
    pool = load_environment(project, "prod").pools["web"]
    assert pool.settings.pool_size == 4 and pool.settings.soak == 2.0


def test_the_projects_ansible_cfg_is_in_force(tmp_path: Path) -> None:
    files = {
        "inventories/prod/hosts": "[web]\n[all:vars]\n"
        'rollout={"pool_size": 2, "soak": "1s", "haproxy": {"backend": "web"}}\n',
        "inventories/prod/group_vars/web.yml":
            "rollout:\n  haproxy: {frontend_port: 18201}\n",
    }
    merged = _write(tmp_path / "merge", {
        **files, "ansible.cfg": "[defaults]\nhash_behaviour = merge\n"})
    env = load_environment(merged, "prod")
    hap = env.pools["web"].settings.haproxy
    assert hap is not None and (hap.backend, hap.frontend_port) == ("web", 18201)
    # The same inventory without that ansible.cfg: the group's mapping replaces.
    plain = _write(tmp_path / "plain", files)
    with pytest.raises(ConfigError, match=r"rollout\.haproxy\.backend"):
        load_environment(plain, "prod")


def test_constructed_plugin_groups_hosts(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/01-hosts.yml": """\
            all:
              hosts:
                w1: {tier: front}
                d1: {tier: data}
            """,
        "inventories/prod/02-constructed.yml": """\
            plugin: ansible.builtin.constructed
            strict: true
            groups:
              web: tier == 'front'
            """,
        "inventories/prod/group_vars/web.yml": _pool_yaml(),
    })
    env = load_environment(project, "prod")
    assert list(env.pools) == ["web"]


@pytest.mark.parametrize("how", ["env", "option", "vault-id", "config"])
def test_vault_file_and_inline_values(tmp_path: Path, how: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    inline = _vault("18203").replace("\n", "\n    ")
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web/main.yml":
            'rollout:\n  pool_size: "{{ vault_size }}"\n  soak: 1s\n'
            '  haproxy: {backend: web, frontend_port: "{{ vault_port }}"}\n',
        "inventories/prod/group_vars/web/vault.yml": _vault("vault_size: 3\n"),
        "inventories/prod/group_vars/web/inline.yml": f"vault_port: !vault |\n    {inline}\n",
        "pw": PASSWORD + "\n",
    })
    vault = VaultOptions()
    if how == "env":
        monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(project / "pw"))
    elif how == "option":
        vault = VaultOptions(password_files=(str(project / "pw"),))
    elif how == "vault-id":
        vault = VaultOptions(vault_ids=(f"prod@{project / 'pw'}",))
    else:
        (project / "ansible.cfg").write_text("[defaults]\nvault_identity_list = prod@pw\n")
        monkeypatch.chdir(project)  # a relative password file, as Ansible resolves it
    settings = load_environment(project, "prod", vault).pools["web"].settings
    assert settings.pool_size == 3
    assert settings.haproxy is not None and settings.haproxy.frontend_port == 18203


@pytest.mark.parametrize("password", [None, "wrong"])
def test_a_missing_or_wrong_vault_password_names_the_file(tmp_path: Path,
                                                           password: str | None) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web/main.yml": _pool_yaml(),
        "inventories/prod/group_vars/web/vault.yml": _vault("token: abc\n"),
        "pw": f"{password}\n",
    })
    vault = VaultOptions(password_files=(str(project / "pw"),)) if password else None
    with pytest.raises(ConfigError) as caught:
        load_environment(project, "prod", vault)
    assert str(project / "inventories/prod/group_vars/web/vault.yml") in str(caught.value)
    assert caught.value.exit_code == 2
    assert "vault" in str(caught.value).lower()


def test_a_wrong_password_for_an_inline_value_names_the_file(tmp_path: Path) -> None:
    inline = _vault("18203", password="other").replace("\n", "\n    ")
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web.yml":
            f"port: !vault |\n    {inline}\nrollout:\n  pool_size: 2\n"
            '  haproxy: {backend: web, frontend_port: "{{ port }}"}\n',
        "pw": PASSWORD + "\n",
    })
    with pytest.raises(ConfigError) as caught:
        load_environment(project, "prod",
                         VaultOptions(password_files=(str(project / "pw"),)))
    assert str(project / "inventories/prod/group_vars/web.yml") in str(caught.value)


def test_a_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    project = _write(tmp_path, {"inventories/prod/hosts": "[web]\n"})
    with pytest.raises(ConfigError, match="nope"):
        load_environment(project, "prod",
                         VaultOptions(password_files=(str(tmp_path / "nope"),)))


def test_an_undefined_variable_names_the_file_and_key(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web.yml":
            'rollout:\n  pool_size: "{{ nowhere }}"\n'
            "  haproxy: {backend: web, frontend_port: 18201}\n",
    })
    with pytest.raises(ConfigError) as caught:
        load_environment(project, "prod")
    text = str(caught.value)
    assert str(project / "inventories/prod/group_vars/web.yml") in text
    assert "rollout" in text and "nowhere" in text


def test_a_broken_ini_file_names_the_inventory(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web\nhost-1 = = =\n",
        "inventories/prod/group_vars/web.yml": _pool_yaml(),
    })
    with pytest.raises(ConfigError) as caught:
        load_environment(project, "prod")
    assert str(project / "inventories/prod/hosts") in str(caught.value)


def test_a_smoke_suite_in_a_sibling_with_the_same_prefix_is_outside(tmp_path: Path) -> None:
    project = _write(tmp_path / "proj", {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web.yml": _pool_yaml(smoke={"suite": "../proj-evil"}),
    })
    (tmp_path / "proj-evil").mkdir()
    with pytest.raises(ConfigError, match=r"rollout\.smoke\.suite"):
        load_environment(project, "prod")


def test_a_host_vars_file_for_a_pool_node_does_not_change_the_pool(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\nweb-1\n",
        "inventories/prod/group_vars/web.yml": _pool_yaml(),
        "inventories/prod/host_vars/web-1.yml": _pool_yaml(pool_size=9),
    })
    assert load_environment(project, "prod").pools["web"].settings.pool_size == 2


def _bomb(levels: int = 9) -> str:
    lines = ['  l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for n in range(1, levels):
        lines.append(f"  l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_a_billion_laughs_hosts_file_fails_fast_with_exit_2(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts.yml":
            f"all:\n  children:\n    web: {{}}\n  vars:\n{_bomb()}\n",
        "inventories/prod/group_vars/web.yml": _pool_yaml(),
    })
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"hosts.yml: its aliases expand to [\d,]+ values") \
            as caught:
        load_environment(project, "prod")
    assert caught.value.exit_code == 2
    assert time.monotonic() - started < 2.0


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts.yml":
            "all:\n  children:\n    web: {}\nloop: &loop {children: {again: *loop}}\n",
    })
    with pytest.raises(ConfigError, match="an alias refers to a value that contains it"):
        load_environment(project, "prod")


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    project = _write(tmp_path, {
        "inventories/prod/hosts.yml":
            "x-empty: &empty {hosts: {}}\nall:\n  children:\n    web: *empty\n    api: *empty\n",
        "inventories/prod/group_vars/web.yml": _pool_yaml(),
    })
    assert list(load_environment(project, "prod").pools) == ["web"]


def test_a_bad_vault_value_is_reported_without_showing_it(tmp_path: Path) -> None:
    secret = "hunter2-not-a-port"
    inline = _vault(secret).replace("\n", "\n    ")
    project = _write(tmp_path, {
        "inventories/prod/hosts": "[web]\n",
        "inventories/prod/group_vars/web/inline.yml": f"web_port: !vault |\n    {inline}\n",
        "inventories/prod/group_vars/web/file.yml": _vault(f"web_backend: {secret};x\n"),
        "inventories/prod/group_vars/web/main.yml":
            'rollout:\n  pool_size: 2\n  service_port: "{{ web_port }}"\n'
            '  haproxy: {backend: "{{ web_backend }}", frontend_port: 18201}\n',
        "pw": PASSWORD + "\n",
    })
    with pytest.raises(ConfigError) as caught:
        load_environment(project, "prod", VaultOptions(password_files=(str(project / "pw"),)))
    text = str(caught.value)
    assert "rollout.service_port" in text and "rollout.haproxy.backend" in text
    assert secret not in text and "<vault>" in text
