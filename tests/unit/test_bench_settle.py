"""bench/_settle.py: the rollout-vs-Ansible bench waits until no lab node of
the previous command is still stopping before it times the next one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from rollout.backends.lab.records import LabContext, NodeRecord, write_record
from rollout.config import LabSettings
from rollout.paths import DataDir

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _settle_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_settle", BENCH / "_settle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


settle_mod = _settle_module()


def _lab(tmp_path: Path, names: list[str], pid: int | None = None,
         removing: tuple[str, ...] = ()) -> LabContext:
    lab = LabContext(DataDir(tmp_path), LabSettings())
    for k, name in enumerate(names):
        lab.node_dir(name).mkdir(parents=True, exist_ok=True)
        write_record(lab, NodeRecord(
            name=name, address=f"10.231.0.{k + 10}", role="web", env="lab", image_id="web-1",
            image_version="1", rollout_id=None, created_at=float(k), pid=pid, writable=False,
            image_dir="/nonexistent", removing=name in removing))
    return lab


def test_a_settled_lab_needs_no_wait(tmp_path: Path) -> None:
    lab = _lab(tmp_path, ["web-a", "web-b"])
    assert settle_mod.settle(lab, 2, {}) < 0.5


def test_it_waits_for_the_nspawn_of_a_removed_node_to_exit(tmp_path: Path) -> None:
    lab = _lab(tmp_path, ["web-a", "web-b"])
    stopping = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    reaper = threading.Thread(target=stopping.wait)
    reaper.start()
    started = time.monotonic()
    waited = settle_mod.settle(lab, 2, {"web-old": stopping.pid})
    reaper.join()
    assert waited >= 0.5 and time.monotonic() - started >= 0.5


@pytest.mark.parametrize(("names", "removing"), [
    (["web-a", "web-b", "web-extra"], ()),   # an extra machine
    (["web-a", "web-b"], ("web-b",)),        # a node being removed
])
def test_it_gives_up_naming_what_is_still_there(tmp_path: Path, names: list[str],
                                                removing: tuple[str, ...]) -> None:
    lab = _lab(tmp_path, names, removing=removing)
    with pytest.raises(RuntimeError, match="did not settle"):
        settle_mod.settle(lab, 2, {}, timeout=0.3)
