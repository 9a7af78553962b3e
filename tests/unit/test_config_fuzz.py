"""Fuzz the config loader with hypothesis: group_vars documents, valid and
invalid, and raw text. ``load_environment`` either returns or raises
ConfigError whose message names the file: never another exception."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollout.config import PoolSettings
from rollout.errors import ConfigError
from rollout.inventory import load_environment

REPO = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load(
    (REPO / "inventories" / "lab" / "group_vars" / "web.yml").read_text())

_KEYS = [*PoolSettings.model_fields, "batchsize", "timeouts.ready", "", "rollout"]
_NESTED = {
    "timeouts": ["ready", "smoke", "lb_up", "drain", "progress_deadline", "nap"],
    "haproxy": ["backend", "frontend_port", "slots", "slot_prefix", "runtime", "rise", "fall",
                "check_interval", "frontend_address"],
    "smoke": ["suite", "http_checks", "retries"],
}

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["30s", "1h30m", "75%", "150%", "-1", "0", "web", "web;reboot",
                     "web\nshow info", "unix:///x.sock", "tcp://127.0.0.1:1", "surge",
                     "in_place", "stopped", "$(reboot)", "../..", "/healthz", "1e400"]),
    st.dates(min_value=datetime.date(1, 1, 1)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def group_vars(draw: st.DrawFn) -> Any:
    """The lab's web.yml with a few keys changed, added or removed."""
    doc: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))
    pool = doc["rollout"]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(_KEYS))
        nested = _NESTED.get(key)
        if nested and isinstance(pool.get(key), dict) and draw(st.booleans()):
            pool[key][draw(st.sampled_from(nested))] = draw(values)
        elif draw(st.integers(0, 5)) == 0:
            pool.pop(key, None)
        else:
            pool[key] = draw(values)
    if draw(st.integers(0, 20)) == 0:
        return draw(values)  # not even a mapping
    return doc


def _project(tmp: Path) -> Path:
    project = tmp / "project"
    if not project.exists():
        shutil.copytree(REPO / "inventories", project / "inventories")
        shutil.copytree(REPO / "smoke", project / "smoke")
        (project / "roles").mkdir()
    return project


def _load(project: Path, path: Path) -> None:
    try:
        env = load_environment(project, "lab")
    except ConfigError as exc:
        assert str(path) in str(exc), f"the message does not name {path}: {exc}"
        return
    assert "web" in env.pools or "rollout" not in (yaml.safe_load(path.read_text()) or {})


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=group_vars())
def test_group_vars_documents_load_or_raise_config_error(tmp_path: Path, doc: Any) -> None:
    project = _project(tmp_path)
    path = project / "inventories" / "lab" / "group_vars" / "web.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load(project, path)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["rollout:\n", "  pool_size: ", "!!int ", "!!timestamp ",
                              "!!float ", "!!binary ", "2020-13-45", "[", "{", "&a ", "*a",
                              "  soak: ", "4\n", "- ", "'", "\"", "\t", "\x00", ": "]),
             max_size=20).map("".join),
))
def test_raw_text_group_vars_never_crash_the_loader(tmp_path: Path, text: str) -> None:
    project = _project(tmp_path)
    path = project / "inventories" / "lab" / "group_vars" / "web.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load(project, path)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lab=st.dictionaries(st.sampled_from(["bridge", "subnet", "nat", "other"]), values,
                           max_size=3),
       order=values)
def test_all_yml_documents_load_or_raise_config_error(tmp_path: Path, lab: Any,
                                                      order: Any) -> None:
    project = _project(tmp_path)
    path = project / "inventories" / "lab" / "group_vars" / "all.yml"
    path.write_text(yaml.safe_dump({"rollout_env": {"lab": lab, "promotion_order": order}}))
    _load(project, path)
