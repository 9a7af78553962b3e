"""The base cache: a base without its stamp is never used; customisation."""

from __future__ import annotations

from pathlib import Path

from rollout.backends.lab import base
from rollout.paths import DataDir


def test_only_a_stamped_base_is_ready(tmp_path: Path) -> None:
    data = DataDir(tmp_path)
    rootfs = base.base_rootfs(data)
    rootfs.mkdir(parents=True)
    assert not base.base_ready(data)  # half-built: no stamp
    (rootfs.parent / "stamp").write_text("{}\n")
    assert base.base_ready(data)
    assert base.ensure_base(data) == rootfs  # cached: nothing is built


def test_key_is_stable_and_names_the_suite() -> None:
    key = base.base_key()
    assert key.startswith("bookworm-") and key == base.base_key()


def test_customise_seals_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    for rel in ("etc/ssh/sshd_config.d", "etc/systemd/system/multi-user.target.wants",
                "var/lib/dbus", "var/cache/apt/archives"):
        (root / rel).mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "etc/hostname").write_text("builder\n")
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    (wants / "nginx.service").symlink_to("/lib/systemd/system/nginx.service")
    base.customise(root)
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/hostname").exists()
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    dropin = (root / "etc/ssh/sshd_config.d/rollout-lab.conf").read_text()
    assert "HostKey /etc/ssh/node/ssh_host_ed25519_key" in dropin
    assert "AuthorizedKeysFile /etc/ssh/node/authorized_keys" in dropin
    assert (wants / "ssh.service").is_symlink()
    assert not (wants / "nginx.service").exists()
