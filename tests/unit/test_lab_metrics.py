"""The lab's metrics plumbing, pure: HAProxy's exporter frontend, the
Prometheus scrape config and the ports derived from the pool's frontend."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rollout.backends.lab.prometheus import LabMetricsPorts, lab_metrics_ports, render_config
from rollout.drivers.haproxy.config import BackendSpec
from rollout.drivers.haproxy.config import render_config as render_haproxy
from rollout.inventory import load_environment

REPO = Path(__file__).resolve().parents[2]
SPEC = BackendSpec(name="web", frontend_address="127.0.0.1", frontend_port=18600, slots=4,
                   slot_prefix="node", service_port=80, health_path="/healthz",
                   check_interval=0.5, rise=2, fall=2)


def test_ports_follow_the_first_frontend() -> None:
    env = load_environment(REPO, "lab")
    ports = lab_metrics_ports(env)
    assert ports == LabMetricsPorts(exporter=9080, prometheus=10080)
    assert ports.url == "http://127.0.0.1:10080"


def test_the_pipeline_environments_share_no_port() -> None:
    """dev, staging and prod run at once on consecutive frontend ports."""
    taken: list[int] = []
    for name in ("lab", "dev", "staging", "prod"):
        env = load_environment(REPO, name)
        ports = lab_metrics_ports(env)
        assert ports is not None
        frontends = [p.settings.haproxy.frontend_port for p in env.pools.values()
                     if p.settings.haproxy is not None]
        taken += [*frontends, ports.exporter, ports.prometheus]
    assert len(taken) == len(set(taken)), sorted(taken)


def test_scrape_config_targets_the_exporter_every_second() -> None:
    text = render_config(LabMetricsPorts(19601, 19600))
    assert "scrape_interval: 1s" in text and "targets: ['127.0.0.1:19601']" in text


def test_haproxy_serves_the_exporter_and_forwards_for(tmp_path: Path) -> None:
    text = render_haproxy([SPEC], socket_path=tmp_path / "s.sock", state_file=tmp_path / "st",
                          metrics_port=19601)
    assert "bind 127.0.0.1:19601" in text
    assert "use-service prometheus-exporter if { path /metrics }" in text
    assert "option forwardfor" in text
    assert "19601" not in render_haproxy([SPEC], socket_path=tmp_path / "s.sock",
                                         state_file=tmp_path / "st")
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    (tmp_path / "h.cfg").write_text(text)
    check = subprocess.run(["haproxy", "-c", "-q", "-f", str(tmp_path / "h.cfg")],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
