"""requirements.yml installed with the real ansible-galaxy, offline: a Galaxy
role from a tarball and a collection from its built tarball, into the project's
roles path and collections path (or where its ansible.cfg says)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.drivers.ansible_galaxy import install_requirements
from rollout.errors import BakeError, ConfigError
from tests.fixtures import galaxy


def _project(tmp: Path) -> Path:
    project = tmp / "project"
    (project / "roles").mkdir(parents=True)
    return galaxy.lay(project)


def test_roles_and_collections_install_offline_and_twice(tmp_path: Path) -> None:
    project = _project(tmp_path)
    ran = install_requirements(project, tmp_path / "logs")
    assert len(ran) == 2
    assert (project / "roles/acme.motd/tasks/main.yml").is_file()
    assert (project / "collections/ansible_collections/acme/util/roles/limits").is_dir()
    # Already installed: a second bake does not fail (ansible-galaxy skips them).
    install_requirements(project, tmp_path / "logs")
    assert "acme.motd" in (tmp_path / "logs" / "galaxy.log").read_text()


def test_ansible_cfg_paths_are_honoured(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "ansible.cfg").write_text(
        "[defaults]\nroles_path = galaxy_roles:roles\ncollections_path = vendored\n")
    install_requirements(project, tmp_path / "logs")
    assert (project / "galaxy_roles/acme.motd/tasks/main.yml").is_file()
    assert (project / "vendored/ansible_collections/acme/util").is_dir()


def test_a_missing_source_names_the_requirements_file(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "vendor" / "acme.motd.tar.gz").unlink()
    with pytest.raises(BakeError) as caught:
        install_requirements(project, tmp_path / "logs")
    assert str(project / "requirements.yml") in str(caught.value)


def test_no_requirements_no_galaxy(tmp_path: Path) -> None:
    assert install_requirements(tmp_path, tmp_path / "logs") == []


def test_a_malformed_requirements_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "requirements.yml").write_text("roles: [\n")
    with pytest.raises(ConfigError, match=r"requirements\.yml: not valid YAML"):
        install_requirements(tmp_path, tmp_path / "logs")
