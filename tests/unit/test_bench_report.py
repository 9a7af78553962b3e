"""bench/report.py: the benches' JSON turned into docs/BENCHMARKS.md's generated
blocks. A miss must render as a miss with its cause; prose outside the markers
and blocks without a JSON stay as they are; an unknown shape is still shown."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOC = """# Benchmarks

Hand-written prose stays.

<!-- generated: scale_sim -->
old table
<!-- end generated: scale_sim -->

### How it is measured

More prose.

<!-- generated: bake -->
hand-kept bake table
<!-- end generated: bake -->
"""


def _sim_figures(ratio: float, met: bool) -> dict[str, object]:
    goals: list[dict[str, object]] = [
        {"figure": "controller CPU per node step", "value": 0.4, "unit": "ms",
         "goal": "≤ 2 ms", "met": True},
        {"figure": "peak RSS", "value": 80.0, "unit": "MB", "goal": "≤ 150 MB", "met": True},
        {"figure": "wall ÷ theoretical", "value": ratio, "unit": "", "goal": "≤ 1.05",
         "met": met, "detail": "33.0s ÷ 30.0s"},
    ]
    if not met:
        goals[2]["cause"] = "0.3 s per batch spent in polled waits"
    return {"profile": "lab", "store": "sqlite", "nodes": 900, "batches": 9, "batch": 100,
            "poll": 0.1, "throttle": None, "status": "succeeded", "replaced": 900,
            "problems": [], "goals": goals}


def test_a_miss_renders_as_a_miss_with_its_cause(report: ModuleType, tmp_path: Path) -> None:
    report.write_result("scale_sim", "lab-sqlite", _sim_figures(1.1, False), results=tmp_path)
    text, done = report.regenerate(DOC, tmp_path)
    assert done == ["scale_sim"]
    block = text.split("<!-- generated: scale_sim -->")[1].split("<!-- end generated")[0]
    assert "**33.0s ÷ 30.0s = 1.1: missed** (0.3 s per batch spent in polled waits)" in block
    assert "0.4 ms: met" in block
    assert "old table" not in block


def test_a_met_goal_says_met_and_each_table_carries_commit_and_date(
        report: ModuleType, tmp_path: Path) -> None:
    path = report.write_result("scale_sim", "lab-sqlite", _sim_figures(1.02, True),
                               results=tmp_path)
    entry = json.loads(path.read_text())["entries"]["lab-sqlite"]
    assert entry["commit"] and entry["date"] and len(entry["load"]) == 3
    text, _ = report.regenerate(DOC, tmp_path)
    assert "1.02: met" in text and "missed" not in text
    assert f"commit `{entry['commit']}`, {entry['date']}" in text


def test_prose_and_blocks_without_json_are_kept(report: ModuleType, tmp_path: Path) -> None:
    report.write_result("scale_sim", "lab-sqlite", _sim_figures(1.02, True), results=tmp_path)
    text, done = report.regenerate(DOC, tmp_path)
    assert "Hand-written prose stays." in text and "More prose." in text
    assert "hand-kept bake table" in text and "bake" not in done


def test_entries_accumulate_per_configuration(report: ModuleType, tmp_path: Path) -> None:
    report.write_result("scale_sim", "lab-sqlite", _sim_figures(1.02, True), results=tmp_path)
    other = {**_sim_figures(1.2, False), "store": "postgresql"}
    report.write_result("scale_sim", "lab-postgresql", other, results=tmp_path)
    text, _ = report.regenerate(DOC, tmp_path)
    assert "| lab | sqlite |" in text and "| lab | postgresql |" in text


def test_an_unknown_or_changed_shape_is_still_shown(report: ModuleType, tmp_path: Path) -> None:
    # A bench that writes its own format (no entries), and a known bench whose
    # figures lost a key its table needs: both fall back to a list of figures.
    (tmp_path / "bake.json").write_text(json.dumps({"median_bake_s": 11.7, "runs": [11.2, 11.7]}))
    report.write_result("scale_sim", "x", {"goals": [{"figure": "wall ÷ theoretical",
                                                      "value": 1.3, "met": False}]},
                        results=tmp_path)
    text, done = report.regenerate(DOC, tmp_path)
    assert sorted(done) == ["bake", "scale_sim"]
    assert "| median_bake_s | 11.7 |" in text
    assert "1.3: missed** (no cause recorded)" in text


def _overhead_figures(wall_over_limit: float) -> dict[str, object]:
    run = {"wall": 50.0, "process_wall": 60.0, "failed": 0.0, "requests": 30000.0,
           "limit": 50.0 / wall_over_limit, "wall_over_limit": wall_over_limit,
           "wall_over_phases": 1.02, "wall_over_phases_excl_soak": 1.08}
    return {"runs": [run, run], "medians": dict(run),
            "components": {"boot": 2.5, "smoke": 10.0, "lb_rise": 1.0, "drain": 0.01,
                           "soak": 3.0},
            "notice": {"lb_admin": {"median": 0.08, "min": 0.03, "max": 0.09}},
            "pool": {"nodes": 4, "strategy": "surge", "batch_size": 1, "canary": 1},
            "rate": 500.0, "poll_interval": 0.1}


def test_the_overhead_table_says_when_its_limit_is_wrong(report: ModuleType,
                                                          tmp_path: Path) -> None:
    doc = "<!-- generated: rollout_overhead -->\n<!-- end generated: rollout_overhead -->\n"
    report.write_result("rollout_overhead", "default", _overhead_figures(0.9), results=tmp_path)
    text, done = report.regenerate(doc, tmp_path)
    assert done == ["rollout_overhead"]
    assert "**0.900**" in text and "a miss of the measure" in text
    report.write_result("rollout_overhead", "default", _overhead_figures(1.1), results=tmp_path)
    text, _ = report.regenerate(doc, tmp_path)
    assert "**1.100**" in text and "a miss of the measure" not in text
    assert "| admin state set to DRAIN" in text and "| 0.080 s |" in text


def test_the_ansible_comparison_renders_its_three_ratios(report: ModuleType,
                                                         tmp_path: Path) -> None:
    doc = "<!-- generated: rollout_under_load -->\n<!-- end generated: rollout_under_load -->\n"
    command = {"kind": "rollout", "wall": 40.0, "wrk": {"rate": 500.0}}
    figures = {
        "rollout_only": {"rollout": 40.0, "baseline": 200.0, "ratio": 0.2},
        "bake_plus_rollout": {"bake": 60.0, "rollout": 100.0, "baseline": 200.0, "ratio": 0.5},
        "pipeline_3_envs": {"rollout": 180.0, "baseline": 600.0, "ratio": 0.3},
        "tools": {"rollout": {"commands": 1, "failed_total": 0, "requests_total": 1000,
                              "min_capacity": 4, "wall_over_phases_median": 1.02},
                  "baseline": {"commands": 1, "failed_total": 3, "requests_total": 5000,
                               "min_capacity": 3}},
        "commands": [command, {**command, "kind": "baseline", "wall": 200.0}],
        "pipelines": [{"run": 1, "kind": "rollout", "bake": 60.0, "pipeline": 180.0,
                       "rollouts": [40.0, 40.0, 40.0]}],
        "pool_size": 4, "runs": 1, "order": "alternating", "settle_waits": {"max": 0.0},
    }
    report.write_result("rollout_under_load", "default", figures, results=tmp_path)
    text, _ = report.regenerate(doc, tmp_path)
    times = "\u00d7"
    assert all(f"**{r}{times}**" in text for r in ("0.20", "0.50", "0.30"))
    assert "| playbook | 1 | 200.0 s | **3** of 5,000 | 3/4 |" in text
