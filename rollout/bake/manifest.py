"""The image manifest: one schema for every backend, and the helpers that fill it.

A bake writes one manifest per image. The lab stores it as ``manifest.json``
next to the rootfs; AWS stores it in the AMI's tags (structured fields as
compact JSON, see :mod:`rollout.backends.aws.images`). Either way a reader gets
the same dict back. The schema is open: readers ignore keys they do not know.

| key              | meaning                                                      |
|------------------|--------------------------------------------------------------|
| schema           | 1                                                            |
| id, role, version| the image id ``<role>-<version>-<8 hex>``, its role, version  |
| parent           | the image it was baked from, or null for the base            |
| base             | what the chain starts from: the base cache id, or an AMI id  |
| role_checksum    | sha256 over roles/<role>, roles/base and playbooks/bake.yml   |
| roles_commit     | ``git rev-parse HEAD`` of the project, or null               |
| roles_dirty      | true when roles/ or playbooks/ had uncommitted changes       |
| created_at       | ISO 8601 UTC of the bake's start; ``created_at_epoch`` in s  |
| bake_seconds     | time from the bake's start to the capture of the image      |
| builder          | the builder that made it (lab node name, EC2 instance id)    |
| ansible          | {stats: {ok: {host: n}, changed: …}, log: path}              |
| smoke            | {passed, summary, junit, duration} or {skipped: true}        |
| verified         | false when baked without the smoke gate (--no-smoke)         |
| extra_vars       | {names: [...]}: the NAMES of the user's extra vars; values   |
|                  | (secrets, often) are never recorded                          |
| promotions       | [{env, at, …}] appended by promotion                         |
| evidence         | [{kind, …}] appended by rollouts (smoke results, soaks…)     |
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout import names
from rollout.errors import ConfigError
from rollout.model import BakeRequest, Image, Node, SmokeResult

SCHEMA = 1
#: Lists in the manifest that later stages append to.
APPENDABLE = ("promotions", "evidence")
#: Fields whose value is a JSON object (a store that keeps only strings encodes them).
STRUCTURED = ("ansible", "smoke", "extra_vars")
#: The longest smoke summary kept: the record must fit an AMI tag.
SUMMARY_LIMIT = 160


def new_image_id(role: str, version: str) -> str:
    """``<role>-<version>-<8 hex>``: unique even when a version is baked again."""
    names.name(role, "role")
    names.version(version)
    return names.image_id(f"{role}-{version}-{secrets.token_hex(4)}")


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )


def role_checksum(project: Path, role: str) -> str:
    """sha256 over the files that define an image of ``role``: roles/<role>,
    roles/base and playbooks/bake.yml, as sorted relative paths plus contents."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for top in (project / "roles" / role, project / "roles" / "base"):
        if top.is_dir():
            files += [
                p for p in top.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            ]
    playbook = project / "playbooks" / "bake.yml"
    if playbook.is_file():
        files.append(playbook)
    for path in sorted(files, key=lambda p: p.relative_to(project).as_posix()):
        rel = path.relative_to(project).as_posix().encode()
        content = path.read_bytes()
        digest.update(b"%d:%s\0%d:" % (len(rel), rel, len(content)))
        digest.update(content)
    return digest.hexdigest()


def roles_commit(project: Path) -> tuple[str | None, bool]:
    """(``git rev-parse HEAD``, whether roles/ or playbooks/ have uncommitted
    changes) of the project; (None, False) when it is not a git checkout."""
    git = shutil.which("git")
    if git is None:
        return None, False
    try:
        head = subprocess.run(
            [git, "-C", str(project), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            [git, "-C", str(project), "status", "--porcelain", "--", "roles", "playbooks"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return head.stdout.strip() or None, bool(status.stdout.strip())


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path`` (``<image dir>/manifest.json``); ConfigError naming
    the file when it is unreadable, truncated, nested too deeply to parse or
    lacks a required field. FileNotFoundError when there is none (unregistered)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is one
        raise ConfigError(
            f"{path}: image manifest is corrupt or truncated: {exc}",
            hint=f"remove {path.parent} (the image is unusable) or restore the file",
        ) from None
    except RecursionError:
        # json recurses once per nesting level; a hostile file can exhaust the stack.
        raise ConfigError(
            f"{path}: image manifest is nested too deeply to read",
            hint=f"remove {path.parent} (the image is unusable) or restore the file",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: image manifest must be a JSON object")
    for key, kind in (("id", str), ("role", str), ("version", str)):
        if not isinstance(data.get(key), kind):
            raise ConfigError(f"{path}: image manifest lacks the field {key!r}")
    epoch = data.get("created_at_epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        raise ConfigError(f"{path}: image manifest lacks the field 'created_at_epoch'")
    if data["id"] != path.parent.name:
        raise ConfigError(
            f"{path}: manifest id {data['id']!r} does not match its directory "
            f"{path.parent.name!r}",
            hint="image directories must not be renamed",
        )
    return data


def image_from_manifest(manifest: dict[str, Any], location: str) -> Image:
    """The Image a checked manifest describes, found at ``location``."""
    parent = manifest.get("parent")
    return Image(
        id=manifest["id"],
        role=manifest["role"],
        version=manifest["version"],
        created_at=float(manifest["created_at_epoch"]),
        location=location,
        parent=parent if isinstance(parent, str) else None,
        verified=manifest.get("verified", True) is not False,
        manifest=manifest,
    )


def smoke_record(result: SmokeResult | None) -> dict[str, Any]:
    """The manifest's ``smoke`` field: the gate's outcome, or ``{skipped: true}``."""
    if result is None:
        return {"skipped": True}
    summary = result.summary
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    return {
        "passed": result.passed, "summary": summary, "junit": result.junit_path,
        "duration": round(result.duration, 3),
    }


def bake_manifest(
    request: BakeRequest,
    *,
    base: str,
    builder: Node,
    started_at: float,
    bake_seconds: float,
    stats: Mapping[str, Mapping[str, int]],
    log: Path | None,
    smoke: SmokeResult | None,
) -> dict[str, Any]:
    """The manifest of a finished bake, in the one schema (see the module doc)."""
    commit, dirty = roles_commit(request.project)
    return {
        "schema": SCHEMA,
        "id": request.image_id,
        "role": request.role,
        "version": request.version,
        "parent": request.parent.id if request.parent is not None else None,
        "base": base,
        "role_checksum": role_checksum(request.project, request.role),
        "roles_commit": commit,
        "roles_dirty": dirty,
        "created_at": iso_utc(started_at),
        "created_at_epoch": started_at,
        "bake_seconds": round(bake_seconds, 3),
        "builder": builder.target or builder.name,
        "ansible": {
            "stats": {key: dict(per_host) for key, per_host in stats.items()},
            "log": str(log or ""),
        },
        "smoke": smoke_record(smoke),
        "verified": smoke is not None,
        "extra_vars": {"names": sorted(request.extra_vars)},
    }
