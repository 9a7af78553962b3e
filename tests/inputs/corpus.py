"""The bad-input corpus: one directory per case under tests/inputs/.

Each case has a ``case.yml``:

| key     | meaning                                                              |
|---------|----------------------------------------------------------------------|
| what    | one line: what is wrong                                              |
| argv    | the rollout command line (``--project`` is added; the data directory |
|         | comes from ``ROLLOUT_DATA_DIR``)                                     |
| exit    | the exit code it must end with (2 unless documented otherwise)      |
| expect  | substrings the message must hold; ``{project}`` and ``{data}`` are   |
|         | replaced by the project copy and the data directory                 |
| remove  | files to delete from the project copy (optional)                    |
| lab     | false when the case cannot run against the live lab (default true)  |

and the files it needs: ``project/...`` is laid over a copy of the project
(inventories and smoke suites copied; roles and playbooks linked), ``data/...``
over the data directory (a corrupt journal, a truncated manifest...).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    what: str
    argv: tuple[str, ...]
    exit: int
    expect: tuple[str, ...]
    remove: tuple[str, ...] = ()
    lab: bool = True
    data_files: tuple[Path, ...] = ()  # relative to path / "data"

    @classmethod
    def load(cls, path: Path) -> Case:
        body: dict[str, Any] = yaml.safe_load((path / "case.yml").read_text())
        data = path / "data"
        files: tuple[Path, ...] = ()
        if data.is_dir():
            files = tuple(sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file()))
        return cls(
            name=path.name, path=path, what=str(body["what"]),
            argv=tuple(str(a) for a in body["argv"]), exit=int(body["exit"]),
            expect=tuple(str(e) for e in body["expect"]),
            remove=tuple(body.get("remove", ())), lab=bool(body.get("lab", True)),
            data_files=files,
        )

    def expected(self, project: Path, data: Path) -> list[str]:
        return [e.replace("{project}", str(project)).replace("{data}", str(data))
                for e in self.expect]


def cases() -> list[Case]:
    return [Case.load(p) for p in sorted(HERE.iterdir()) if (p / "case.yml").is_file()]


def lay_project(case: Case, base: Path, dest: Path) -> Path:
    """A copy of the project at ``base`` (inventories and smoke copied, roles and
    playbooks linked) with the case's ``project/`` files laid over it."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(base / "inventories", dest / "inventories")
    shutil.copytree(base / "smoke", dest / "smoke")
    for name in ("roles", "playbooks"):
        (dest / name).symlink_to((base / name).resolve())
    overlay = case.path / "project"
    if overlay.is_dir():
        shutil.copytree(overlay, dest, dirs_exist_ok=True)
    for rel in case.remove:
        (dest / rel).unlink()
    return dest


def lay_data(case: Case, dest: Path) -> Path:
    """The case's ``data/`` files copied into the data directory ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in case.data_files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(case.path / "data" / rel, target)
    return dest


@dataclass(frozen=True)
class Outcome:
    code: int
    output: str


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    # `rollout run` installs SIGINT/SIGTERM handlers; don't leave them in pytest.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_cli(argv: list[str], data: Path) -> Outcome:
    """``rollout ARGV`` in this process through the real entry point, with
    ``ROLLOUT_DATA_DIR`` set (so even a crash report lands in ``data``)."""
    from rollout.cli.main import main

    env_keys = ("ROLLOUT_DATA_DIR", "ROLLOUT_PROJECT", "ROLLOUT_ENV")
    saved = {k: os.environ.get(k) for k in env_keys}
    os.environ["ROLLOUT_DATA_DIR"] = str(data)
    os.environ.pop("ROLLOUT_PROJECT", None)
    os.environ.pop("ROLLOUT_ENV", None)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with _signals_kept(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Outcome(code, out.getvalue() + err.getvalue())


def check(case: Case, outcome: Outcome, project: Path, data: Path) -> list[str]:
    """What is wrong with ``outcome`` for ``case`` (empty: as documented)."""
    problems = []
    if outcome.code != case.exit:
        problems.append(f"exit {outcome.code}, expected {case.exit}")
    for text in case.expected(project, data):
        if text not in outcome.output:
            problems.append(f"message lacks {text!r}")
    if "Traceback" in outcome.output or "internal error" in outcome.output:
        problems.append("a traceback or internal error")
    return problems
