"""Which HAProxy runtime URLs are accepted (issue 14, item 10): tcp:// only to
this host unless allowed, and ssh:// with the pool's own key and known_hosts."""

from __future__ import annotations

import pytest

from rollout.config import HAProxySettings, validate_model
from rollout.drivers.haproxy.runtime import HAProxyRuntime
from rollout.errors import ConfigError

BASE = {"backend": "web", "frontend_port": 8080}


@pytest.mark.parametrize("url", ["tcp://10.20.30.40:9999", "tcp://lb.example:9999",
                                 "tcp://[2001:db8::1]:9999"])
def test_tcp_to_another_host_is_refused_without_the_opt_in(url: str) -> None:
    with pytest.raises(ConfigError, match=r"web.yml: rollout.haproxy.runtime: tcp:// to .*"
                                          r"allow_remote_tcp"):
        validate_model(HAProxySettings, {**BASE, "runtime": url}, "web.yml", "rollout.haproxy")
    with pytest.raises(ConfigError, match="is not this host"):
        HAProxyRuntime.from_url(url)
    allowed = validate_model(HAProxySettings, {**BASE, "runtime": url, "allow_remote_tcp": True},
                             "web.yml", "rollout.haproxy")
    assert allowed.runtime == url
    assert HAProxyRuntime.from_url(url, allow_remote_tcp=True).url == url


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9999", "tcp://127.0.0.9:9999",
                                 "tcp://[::1]:9999", "tcp://localhost:9999"])
def test_tcp_to_this_host_needs_no_opt_in(url: str) -> None:
    assert validate_model(HAProxySettings, {**BASE, "runtime": url}, "w", "h").runtime == url
    assert HAProxyRuntime.from_url(url).url == url


def test_ssh_key_and_known_hosts_are_checked_like_the_aws_ones() -> None:
    with pytest.raises(ConfigError, match=r"rollout\.haproxy\.known_hosts"):
        validate_model(HAProxySettings, {**BASE, "known_hosts": "/k\nProxyCommand x"},
                       "web.yml", "rollout.haproxy")
