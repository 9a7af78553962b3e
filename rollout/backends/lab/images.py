"""The lab's image store: baked root filesystems under ``DataDir.images``.

Each image is a directory ``<images>/<image_id>/`` holding ``rootfs/`` and
``manifest.json``. An image is registered if and only if its manifest exists:
the bake moves the rootfs into place first and writes the manifest last,
atomically (temp file, fsync, rename, fsync of the directory), so a crash at
any point leaves either a complete image or an unregistered directory, never a
half image that a rollout could pick. Directories whose name starts with a dot
(the bake's ``.build/``) are never images.

The manifest's fields are those of the one schema in :mod:`rollout.bake.manifest`.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rollout import names
from rollout.bake.manifest import APPENDABLE, SCHEMA, image_from_manifest, read_manifest
from rollout.errors import ConfigError, NotFoundError
from rollout.fsio import write_json_atomic
from rollout.model import Image
from rollout.paths import DataDir
from rollout.protocols import ImageStore

MANIFEST = "manifest.json"
ROOTFS = "rootfs"

_log = logging.getLogger(__name__)
# The store has a method named ``list``, which shadows the builtin in its body.
_Images = list[Image]
_Paths = list[Path]


class LabImageStore(ImageStore):
    """:class:`rollout.protocols.ImageStore` over ``DataDir.images``.

    ``Image.location`` is the image's rootfs directory (what systemd-nspawn
    boots). Corrupt manifests are skipped by :meth:`list` and reported through
    ``on_problem`` (a log warning by default); :meth:`get` raises for them.
    """

    def __init__(
        self, data: DataDir, *, on_problem: Callable[[ConfigError], None] | None = None
    ) -> None:
        self.root = data.images
        self._on_problem = on_problem or (lambda exc: _log.warning("%s", exc))

    # -- reading -----------------------------------------------------------

    def scan(self, role: str | None = None) -> tuple[list[Image], list[ConfigError]]:
        """Every registered image (of ``role``), oldest first, and the problems
        (corrupt manifests) met on the way."""
        if role is not None:
            names.name(role, "role")
        images: list[Image] = []
        problems: list[ConfigError] = []
        if not self.root.is_dir():
            return images, problems
        for entry in self.root.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                manifest = read_manifest(entry / MANIFEST)
            except FileNotFoundError:
                continue  # not registered: an interrupted bake or a removal
            except ConfigError as exc:
                problems.append(exc)
                continue
            if role is None or manifest["role"] == role:
                images.append(image_from_manifest(manifest, str(entry / ROOTFS)))
        images.sort(key=lambda image: (image.created_at, image.id))
        return images, problems

    def list(self, role: str | None = None) -> list[Image]:
        """Registered images (of ``role``), oldest first. Corrupt manifests are
        reported through ``on_problem`` and skipped."""
        images, problems = self.scan(role)
        for problem in problems:
            self._on_problem(problem)
        return images

    def image_dir(self, image_id: str) -> Path:
        return self.root / names.image_id(image_id)

    def get(self, image_id: str) -> Image:
        path = self.image_dir(image_id) / MANIFEST
        try:
            manifest = read_manifest(path)
        except FileNotFoundError:
            known = ", ".join(image.id for image in self.list()[-5:]) or "none"
            raise NotFoundError(
                f"no image {image_id!r} in {self.root} (newest: {known})",
                hint="list images with `rollout images`, or bake one with `rollout build`",
            ) from None
        return image_from_manifest(manifest, str(path.parent / ROOTFS))

    def latest(self, role: str) -> Image:
        return self._of_role(role)[-1]

    def oldest(self, role: str) -> Image:
        """The role's first baked image (what a fresh pool starts from)."""
        return self._of_role(role)[0]

    def by_version(self, role: str, version: str) -> Image:
        """The newest image of ``role`` with ``version``."""
        names.version(version)
        images = self._of_role(role)
        matching = [image for image in images if image.version == version]
        if not matching:
            versions = ", ".join(dict.fromkeys(image.version for image in images))
            raise NotFoundError(
                f"no image of role {role!r} with version {version!r} in {self.root} "
                f"(versions: {versions})",
                hint=f"bake it: rollout build --role {role} --version {version}",
            )
        return matching[-1]

    def _of_role(self, role: str) -> _Images:
        images = self.list(role)
        if not images:
            roles = sorted({image.role for image in self.list()})
            raise NotFoundError(
                f"no image of role {role!r} in {self.root} "
                f"(roles with images: {', '.join(roles) or 'none'})",
                hint=f"bake one: rollout build --role {role} --version 1.0.0",
            )
        return images

    def leftovers(self) -> _Paths:
        """Directories no image owns: build directories of bakes that were killed
        (``.build/*``) and image directories without a manifest. Safe to delete
        when no bake is running."""
        if not self.root.is_dir():
            return []
        found = sorted((self.root / ".build").glob("*")) if (self.root / ".build").is_dir() else []
        found += sorted(
            entry for entry in self.root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
            and not (entry / MANIFEST).exists()
        )
        return found

    # -- writing -----------------------------------------------------------

    def register(self, image_id: str, manifest: dict[str, Any]) -> Image:
        """Register the image whose rootfs is already in place: write its
        manifest, last and atomically."""
        image_dir = self.image_dir(image_id)
        if not (image_dir / ROOTFS).is_dir():
            raise ConfigError(
                f"{image_dir / ROOTFS}: no rootfs to register",
                hint="move the baked rootfs into place before writing the manifest",
            )
        if manifest.get("id") != image_id:
            raise ConfigError(f"manifest id {manifest.get('id')!r} is not {image_id!r}")
        body = {"schema": SCHEMA, **manifest}
        for key in APPENDABLE:
            body.setdefault(key, [])
        write_json_atomic(image_dir / MANIFEST, body)
        return self.get(image_id)

    def append(self, image_id: str, key: str, entry: dict[str, Any]) -> Image:
        """Append ``entry`` to the manifest list ``key`` (promotions, evidence)."""
        if key not in APPENDABLE:
            raise ConfigError(f"manifest key {key!r} is not one of {', '.join(APPENDABLE)}")
        with self._locked():
            image = self.get(image_id)
            manifest = dict(image.manifest)
            manifest[key] = [*manifest.get(key, []), entry]
            write_json_atomic(self.image_dir(image_id) / MANIFEST, manifest)
        return self.get(image_id)

    def update_manifest(
        self, image_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Image:
        """Replace the manifest with ``change(manifest)``, under the store's lock
        and atomically (used by promotion: ``rollout.core.promotion.record_pass``).
        ``change`` gets a copy and returns the new manifest; the id must not change."""
        with self._locked():
            image = self.get(image_id)
            manifest = change(copy.deepcopy(dict(image.manifest)))
            if manifest.get("id") != image.id:
                raise ConfigError(
                    f"{self.image_dir(image_id) / MANIFEST}: an update may not change the "
                    f"image id (got {manifest.get('id')!r})"
                )
            write_json_atomic(self.image_dir(image_id) / MANIFEST, manifest)
        return self.get(image_id)

    def delete(self, image_id: str) -> None:
        """Unregister (manifest first) and remove an image. Idempotent."""
        image_dir = self.image_dir(image_id)
        with contextlib.suppress(FileNotFoundError):
            (image_dir / MANIFEST).unlink()
        shutil.rmtree(image_dir, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
