"""The files ``rollout pool add ROLE`` writes: a starter role (when the project
has none of that name), a starter testinfra suite, the inventory group and the
pool's group_vars. Each is a template with ``{role}``, ``{var}`` (the role's
name as a variable prefix), ``{port}`` and ``{env}`` filled in.

The starter role serves ``/healthz`` and ``/version`` with nginx-light (which
the lab's base image holds), so a pool added with no other change bakes,
passes its smoke gate and rolls out; replace its tasks with the real service.
"""

from __future__ import annotations

ROLE_FILES: dict[str, str] = {
    "defaults/main.yml": """\
---
# The port {role} serves on: the pool's service_port.
{var}_port: 80
""",
    "tasks/main.yml": """\
---
# A starter role written by `rollout pool add {role}`: nginx answers /healthz and
# /version, which the pool's smoke suite (smoke/{role}) checks. Replace these
# tasks with the real service, keeping a health check on {var}_port.
- name: Write the {role} site
  ansible.builtin.template:
    src: site.conf.j2
    dest: /etc/nginx/sites-available/{role}.conf
    owner: root
    group: root
    mode: "0644"
  notify: Reload nginx

- name: Enable the {role} site
  ansible.builtin.file:
    src: /etc/nginx/sites-available/{role}.conf
    dest: /etc/nginx/sites-enabled/{role}.conf
    state: link
  notify: Reload nginx

- name: Disable the Debian default site
  ansible.builtin.file:
    path: /etc/nginx/sites-enabled/default
    state: absent
  notify: Reload nginx

- name: Check the nginx configuration
  ansible.builtin.command: /usr/sbin/nginx -t -q
  changed_when: false

- name: Enable and start nginx
  ansible.builtin.systemd_service:
    name: nginx
    enabled: true
    state: started

- name: Apply configuration changes now
  ansible.builtin.meta: flush_handlers
""",
    "handlers/main.yml": """\
---
- name: Reload nginx
  ansible.builtin.systemd_service:
    name: nginx
    state: reloaded
""",
    "templates/site.conf.j2": """\
# {{{{ ansible_managed }}}}
server {{
    listen {{{{ {var}_port }}}} default_server;
    location = /healthz {{ return 200 "ok\\n"; }}
    location = /version {{ return 200 "{{{{ rollout_image_version }}}}\\n"; }}
    location / {{ return 200 "role={role} version={{{{ rollout_image_version }}}}\\n"; }}
}}
""",
}

SMOKE_FILES: dict[str, str] = {
    "conftest.py": '''\
"""Settings of the {role} smoke suite, passed in by the smoke runner.

The suite runs against ONE node through testinfra (``--hosts=ssh://root@ADDR``).
``ROLLOUT_EXPECT_VERSION`` is the version the node must run and
``ROLLOUT_SERVICE_PORT`` the port it serves on.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def expected_version() -> str:
    return os.environ.get("ROLLOUT_EXPECT_VERSION", "")


@pytest.fixture(scope="session")
def service_port() -> int:
    return int(os.environ.get("ROLLOUT_SERVICE_PORT", "80"))
''',
    "test_{role}.py": '''\
"""Smoke tests of a {role} node, run over SSH before it takes traffic."""

from __future__ import annotations

from typing import Any


def _get(host: Any, port: int, path: str) -> str:
    result = host.run("curl -sS --fail --max-time 5 %s", f"http://127.0.0.1:{{port}}{{path}}")
    assert result.rc == 0, f"GET {{path}} failed: {{result.stderr.strip()}}"
    return str(result.stdout)


def test_healthz(host: Any, service_port: int) -> None:
    assert _get(host, service_port, "/healthz").strip() == "ok"


def test_version(host: Any, service_port: int, expected_version: str) -> None:
    if expected_version:
        assert _get(host, service_port, "/version").strip() == expected_version
''',
}

INVENTORY_FILE = """\
# The {role} pool's group, added by `rollout pool add {role}`. rollout creates
# the nodes, so the group lists no hosts; move it into your main inventory
# file if you prefer (Ansible reads every source in this directory).
all:
  children:
    {role}:
      hosts: {{}}
"""

GROUP_VARS = """\
# The {role} pool of the {env} environment, added by `rollout pool add {role}`.
# Every setting is described in the README ("Pool settings").
rollout:
  provider: lab
  load_balancer: haproxy
  pool_size: 2
  service_port: 80
  batch_size: 1
  soak: 3s
  smoke:
    suite: smoke/{role}
    http_checks:
      - path: /healthz
        status: 200
  haproxy:
    backend: {role}
    frontend_port: {port}
    slots: 8
"""
