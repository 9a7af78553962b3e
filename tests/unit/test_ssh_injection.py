"""No SSH setting can add an ssh_config directive (issue 14, item 7), and AWS
host keys are pinned per instance id (item 10).

``ssh -G`` prints the configuration ssh would use, so these tests ask ssh
itself what a generated ssh_config or option list means.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from rollout.backends.aws.ec2 import ssh_target_for
from rollout.config import AwsSettings
from rollout.drivers.forensics import aliased_host_keys
from rollout.drivers.smoke import ssh_config_text
from rollout.errors import ConfigError
from rollout.model import Node, NodeState, SshTarget

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs ssh(1) for ssh -G")

INJECTED = "admin\n  ProxyCommand sh -c 'touch /tmp/rollout-pwned'"


def _ssh_g(*args: str) -> dict[str, list[str]]:
    """What ``ssh -G ARGS`` resolves: option -> values."""
    proc = subprocess.run(["ssh", "-G", *args], capture_output=True, text=True, timeout=10,
                          check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    found: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, []).append(value)
    return found


def _config(tmp_path: Path, target: SshTarget) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(ssh_config_text(target.host, target, tmp_path))
    return path


@pytest.mark.parametrize("field", ["user", "key_file", "known_hosts"])
def test_a_newline_in_an_ssh_setting_is_refused(field: str) -> None:
    with pytest.raises(ConfigError, match="not valid"):
        SshTarget(host="10.0.0.5", **{field: INJECTED})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ['/keys/a"b', "/keys/%h", "/keys/a\tb", "/keys/a\rb"])
def test_paths_with_quotes_tokens_or_controls_are_refused(value: str) -> None:
    with pytest.raises(ConfigError):
        SshTarget(host="10.0.0.5", key_file=value)


def test_an_injected_aws_setting_never_reaches_ssh(tmp_path: Path) -> None:
    for key in ("ssh_user", "ssh_key", "known_hosts"):
        with pytest.raises(ValueError, match=key):
            AwsSettings.model_validate({key: INJECTED})


def test_the_generated_config_means_what_it_says(tmp_path: Path) -> None:
    keys = tmp_path / "my keys"
    target = SshTarget(host="10.0.0.5", user="ec2-user", key_file=str(keys / "id_ed25519"),
                       known_hosts=str(keys / "known_hosts"))
    resolved = _ssh_g("-F", str(_config(tmp_path, target)), "10.0.0.5")
    assert resolved["user"] == ["ec2-user"]
    assert resolved["hostname"] == ["10.0.0.5"]
    assert "proxycommand" not in resolved
    assert resolved["identityfile"] == [str(keys / "id_ed25519")]
    assert resolved["userknownhostsfile"] == [str(keys / "known_hosts")]


def test_the_command_line_options_mean_what_they_say(tmp_path: Path) -> None:
    keys = tmp_path / "my keys"
    keys.mkdir()
    (keys / "id").write_text("")  # ssh -i takes only a file that exists
    target = SshTarget(host="10.0.0.5", known_hosts=str(keys / "known_hosts"),
                       key_file=str(keys / "id"))
    resolved = _ssh_g("-F", "/dev/null", *target.ssh_options(), "10.0.0.5")
    assert resolved["userknownhostsfile"] == [str(keys / "known_hosts")]
    assert resolved["identityfile"] == [str(keys / "id")]


def _aws_node(iid: str = "i-0123456789abcdef0", address: str = "10.0.1.7") -> Node:
    return Node(name="web-a1", address=address, role="web", env="prod", image_id="web-1",
                image_version="1.0.0", state=NodeState.RUNNING, created_at=0.0, target=iid)


def test_aws_host_keys_are_pinned_by_instance_id(tmp_path: Path) -> None:
    target = ssh_target_for(_aws_node(), AwsSettings(known_hosts=str(tmp_path / "kh")))
    assert target.host_key_alias == "i-0123456789abcdef0"
    for resolved in (_ssh_g("-F", str(_config(tmp_path, target)), target.host),
                     _ssh_g("-F", "/dev/null", *target.ssh_options(), target.host)):
        assert resolved["hostkeyalias"] == ["i-0123456789abcdef0"]
        assert resolved["stricthostkeychecking"] == ["true"]


def _host_key(tmp_path: Path, name: str) -> tuple[object, str]:
    """A fresh ed25519 host key (paramiko's), and its public line's type and base64."""
    import paramiko

    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    key = paramiko.Ed25519Key.from_private_key_file(str(path))
    return key, f"{key.get_name()} {key.get_base64()}"


def test_forensics_checks_aws_host_keys_under_the_instance_id(tmp_path: Path) -> None:
    import paramiko

    old_key, old_line = _host_key(tmp_path, "old")
    new_key, new_line = _host_key(tmp_path, "new")
    known = tmp_path / "known_hosts"
    # The address's entry is an earlier instance's; the new instance has its own.
    known.write_text(f"10.0.1.7 {old_line}\ni-0123456789abcdef0 {new_line}\n")
    policy = aliased_host_keys(str(known), "i-0123456789abcdef0", accept_new=False)
    policy.missing_host_key(None, "10.0.1.7", new_key)  # accepted
    with pytest.raises(paramiko.BadHostKeyException):
        policy.missing_host_key(None, "10.0.1.7", old_key)
    unknown = aliased_host_keys(str(known), "i-0fedcba9876543210", accept_new=False)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        unknown.missing_host_key(None, "10.0.1.7", old_key)
    learning = aliased_host_keys(str(known), "i-0fedcba9876543210", accept_new=True)
    learning.missing_host_key(None, "10.0.1.7", old_key)
    assert known.read_text().splitlines()[-1] == f"i-0fedcba9876543210 {old_line}"


def test_an_instance_id_that_is_not_one_is_refused() -> None:
    with pytest.raises(Exception, match="not an EC2 instance id"):
        ssh_target_for(_aws_node(iid="i-1\nProxyCommand x"), AwsSettings())
