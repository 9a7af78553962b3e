"""Smoke tests of a web node: run over SSH against the node, before it takes traffic."""

from __future__ import annotations

from typing import Any


def _get(host: Any, port: int, path: str) -> tuple[int, str]:
    """GET a path on the node itself; returns (status, body)."""
    marker = "\n__status__="
    url = f"http://127.0.0.1:{port}{path}"
    result = host.run("curl -sS --max-time 5 -w %s %s", marker + "%{http_code}", url)
    assert result.rc == 0, f"curl {path} failed: {result.stderr.strip()}"
    body, _, status = result.stdout.rpartition(marker)
    return int(status), body


def test_nginx_running_and_enabled(host: Any) -> None:
    nginx = host.service("nginx")
    assert nginx.is_running
    assert nginx.is_enabled


def test_port_listening(host: Any, service_port: int) -> None:
    assert host.socket(f"tcp://0.0.0.0:{service_port}").is_listening


def test_healthz_ok(host: Any, service_port: int) -> None:
    status, body = _get(host, service_port, "/healthz")
    assert status == 200, f"/healthz answered {status}: {body.strip()}"


def test_root_names_node_and_version(host: Any, service_port: int, expected_version: str) -> None:
    status, body = _get(host, service_port, "/")
    hostname = host.run("hostname").stdout.strip()
    assert status == 200
    assert body == f"node={hostname} version={expected_version}\n"


def test_version(host: Any, service_port: int, expected_version: str) -> None:
    status, body = _get(host, service_port, "/version")
    assert status == 200
    assert body.strip() == expected_version


def test_no_failed_units(host: Any) -> None:
    failed = host.run("systemctl --failed --no-legend --plain").stdout.strip()
    assert failed == "", f"failed units:\n{failed}"
