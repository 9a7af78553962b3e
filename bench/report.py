"""The benches' figures as JSON, and docs/BENCHMARKS.md's tables generated from them.

    .venv/bin/python bench/report.py             # rewrite the generated blocks
    .venv/bin/python bench/report.py --print     # show them, change nothing

Each bench writes ``bench/results/NAME.json`` through :func:`write_result`:
``{"bench": NAME, "entries": {KEY: {"commit", "date", "load", "host",
"figures"}}}``, one entry per configuration it was run with (``scale_sim``
keeps one per profile and store), each stamped with the commit it ran on
(``git rev-parse``), the date and the host's load average.

docs/BENCHMARKS.md holds blocks between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->``; this script replaces the inside of each
block whose JSON exists and leaves the rest of the file (the hand-written
prose, blocks of benches not run) alone. A bench it has no table for, or a
JSON whose shape changed, is shown as a plain list of its figures rather
than dropped. A goal ``{"figure", "value", "goal", "met", "cause"}`` that is
not met is written as **missed** with its cause.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "BENCHMARKS.md"


def stamp() -> dict[str, Any]:
    """The commit, the date and the host's load, for a result written now."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.strip()
        # The results and this file change with every bench run: only other
        # uncommitted changes make the code the figures came from unknown.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)bench/results", ":(exclude)docs/BENCHMARKS.md"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout
        commit += "+dirty" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "host": socket.gethostname(),
    }


def write_result(bench: str, key: str, figures: dict[str, Any],
                 results: Path = RESULTS, stamped: dict[str, Any] | None = None) -> Path:
    """Store ``figures`` as entry ``key`` of ``results/BENCH.json`` (atomically),
    stamped now or with ``stamped`` (a :func:`stamp` taken when the run began:
    the commit whose code the run loaded)."""
    path = results / f"{bench}.json"
    data: dict[str, Any] = {"bench": bench, "entries": {}}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if isinstance(old.get("entries"), dict):
                data = old
        except (ValueError, AttributeError):
            pass  # a broken or foreign file is replaced
    data["entries"][key] = {**(stamped or stamp()), "figures": figures}
    results.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return path


# --- rendering ----------------------------------------------------------------------


def goal_cell(goal: dict[str, Any]) -> str:
    value = f"{goal.get('value')}{(' ' + goal['unit']) if goal.get('unit') else ''}"
    if goal.get("detail"):
        value = f"{goal['detail']} = {value}"
    if goal.get("met"):
        return f"{value}: met"
    cause = goal.get("cause") or "no cause recorded"
    return f"**{value}: missed** ({cause})"


def _stamp_line(entries: dict[str, Any]) -> str:
    stamps = sorted({(e.get("commit", "?"), e.get("date", "?"), _load(e))
                     for e in entries.values()})
    return "; ".join(f"commit `{c}`, {d}, load {load}" for c, d, load in stamps)


def _load(entry: dict[str, Any]) -> str:
    load = entry.get("load")
    if isinstance(load, list) and load:
        return f"{load[0]:g} on {entry.get('cpus', '?')} CPUs"
    return "?"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_scale_sim(entries: dict[str, Any]) -> list[str]:
    rows = []
    for key in sorted(entries):
        f = entries[key]["figures"]
        goals = {g["figure"]: g for g in f.get("goals", [])}
        thr = f.get("throttle")
        rows.append([
            f"{f['profile']}", f"{f['store']}", f"{f['nodes']} ({f['batches']} x {f['batch']})",
            f"{f['poll']:g} s", f"{thr['throttled']}/{thr['attempts']}" if thr else "none",
            f"{f['status']}, {f['replaced']} replaced"
            + ("" if not f.get("problems") else "; " + "; ".join(f["problems"])),
            *(goal_cell(goals[name]) if name in goals else "-" for name in (
                "controller CPU per node step", "peak RSS", "wall ÷ theoretical")),
        ])
    return _table(["latencies", "journal", "nodes (batches)", "poll", "throttled attempts",
                   "outcome", "CPU per node step (≤ 2 ms)", "peak RSS (≤ 150 MB)",
                   "wall ÷ theoretical (≤ 1.05)"], rows)


def render_state_store(entries: dict[str, Any]) -> list[str]:
    rows = []
    for key in sorted(entries, key=lambda k: (entries[k]["figures"].get("batch", 0), k)):
        f = entries[key]["figures"]
        for store, r in sorted(f["stores"].items()):
            if isinstance(r, str):
                rows.append([store, str(f["batch"]), r, "", "", ""])
                continue
            rows.append([store, str(f["batch"]), f"{r['median_ms']:.2f}", f"{r['p95_ms']:.2f}",
                         f"{r['per_step_ms']:.2f}", f"{r['cpu_per_step_ms']:.2f}"])
    return _table(["store", "steps per txn", "median ms", "p95 ms", "write ms/step",
                   "CPU ms/step"], rows)


#: The table's range dash and ratio sign (spelt out: ruff flags them as look-alikes).
DASH, TIMES = "\u2013", "\u00d7"


def _range(values: list[float], unit: str = " s") -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo:.1f}{unit}" if lo == hi else f"{lo:.1f}{DASH}{hi:.1f}{unit}"


def render_under_load(entries: dict[str, Any]) -> list[str]:
    """rollout against the in-place playbook: the three comparisons, then each
    tool's commands (wall range, failures, capacity, the load's rate)."""
    lines: list[str] = []
    for key in sorted(entries):
        f = entries[key]["figures"]
        cmp_rows = []
        for name, label in (("rollout_only", "rollout only: one `rollout run` against one "
                                              "playbook run"),
                            ("bake_plus_rollout", "bake + rollout: the bake plus the rollout "
                                                  "to that image, against one playbook run"),
                            ("pipeline_3_envs", "pipeline: bake once + 3 rollouts against 3 "
                                                "playbook runs")):
            c = f[name]
            extra = f" (bake {c['bake']:.1f} s)" if "bake" in c else ""
            cmp_rows.append([label + extra, f"{c['rollout']:.1f} s", f"{c['baseline']:.1f} s",
                             f"**{c['ratio']:.2f}{TIMES}**"])
        lines += _table(["comparison (medians)", "rollout", "baseline", "rollout ÷ baseline"],
                        cmp_rows)
        tool_rows = []
        for tool, label in (("rollout", "`rollout run`"), ("baseline", "playbook")):
            t = f["tools"][tool]
            cmds = [c for c in f["commands"] if c["kind"] == tool]
            rates = [c["wrk"]["rate"] for c in cmds if isinstance(c.get("wrk"), dict)]
            tool_rows.append([
                label, str(t["commands"]), _range([c["wall"] for c in cmds]),
                f"**{t['failed_total']}** of {t['requests_total']:,}",
                f"{t['min_capacity']}/{f['pool_size']}", _range(rates, " req/s")])
        lines += ["", *_table(["tool", "commands", "wall (range)", "failed requests (all "
                               "commands)", "min in-service capacity", "wrk's rate"],
                              tool_rows)]
        bakes = [p["bake"] for p in f["pipelines"] if "bake" in p]
        lines += ["", f"- Runs: {f['runs']} ({f['order']}); bakes "
                  f"{', '.join(f'{b:.1f} s' for b in bakes)}; settle waits at most "
                  f"{f['settle_waits']['max']:g} s; rollout's wall ÷ observed phase time "
                  f"{f['tools']['rollout'].get('wall_over_phases_median')} (median); host load at "
                  f"the end {_load_at_end(f)}."]
        for p in f["pipelines"]:
            steps = p.get("rollouts") or p.get("playbooks") or []
            lines.append(f"- Run {p['run']}, {p['kind']}: pipeline {p['pipeline']:.1f} s ("
                         + ", ".join(f"{x:.1f}" for x in steps) + " s per environment)")
    return lines


def _overhead_row(runs: list[dict[str, float]], med: dict[str, float], label: str,
                  name: str, unit: str = " s", bold: bool = False) -> list[str]:
    value = f"{med[name]:.3f}" if not unit else f"{med[name]:.1f}{unit}"
    spread = (_range([r[name] for r in runs], unit) if unit else
              f"{min(r[name] for r in runs):.3f}{DASH}{max(r[name] for r in runs):.3f}")
    return [label, f"**{value}**" if bold else value, spread]


def render_overhead(entries: dict[str, Any]) -> list[str]:
    """The controller's overhead: wall ÷ the physical limit, the components,
    and the time to notice a change."""
    lines: list[str] = []
    for key in sorted(entries):
        f = entries[key]["figures"]
        runs, med, comp = f["runs"], f["medians"], f["components"]

        limit_label = (f"limit: the critical path from the components (boot {comp['boot']:.2f}"
                       f" s, smoke {comp['smoke']:.2f} s, LB rise {comp['lb_rise']:g} s, drain "
                       f"{comp['drain']:.3f} s per node; soak {comp['soak']:g} s)")
        ratio = med["wall_over_limit"]
        verdict = "the wall at or above the limit, as it must be" if ratio >= 1.0 else \
            "below 1: the wall beat its limit, so the limit is wrong, a miss of the measure"
        row = functools.partial(_overhead_row, runs, med)

        lines += _table(["measure", "median", "range"], [
            row("wall time of the rollout (journal)", "wall"),
            row("wall time of the `rollout run` process", "process_wall"),
            [f"failed requests (of {min(r['requests'] for r in runs):,.0f}{DASH}"
             f"{max(r['requests'] for r in runs):,.0f} per run)", f"{med['failed']:g}",
             f"{min(r['failed'] for r in runs):g}{DASH}{max(r['failed'] for r in runs):g}"],
            row(limit_label, "limit"),
            row(f"**wall ÷ limit** (the controller's overhead; {verdict})", "wall_over_limit",
                "", bold=True),
            row("wall ÷ observed phase time (formerly \"the overhead ratio\")",
                "wall_over_phases", ""),
            row("wall ÷ observed phase time, soak left out", "wall_over_phases_excl_soak", ""),
        ])
        labels = {"lb_admin": "admin state set to DRAIN through HAProxy's runtime API",
                  "lb_health": "health forced DOWN through the runtime API",
                  "node_killed": "a node's systemd-nspawn killed",
                  "readiness_probe": "(not a change) one readiness probe: TCP 22, one ssh "
                                     "call, one HTTP GET"}
        notice = f["notice"]
        lines += ["", f"Time for a controller-like observation (polled every "
                  f"{f['poll_interval']:g} s) to reflect a change, goal ≤ 0.5 s:", "",
                  *_table(["change", "median", "range"], [
                      [labels.get(k, k), f"{v['median']:.3f} s",
                       f"{v['min']:.3f}{DASH}{v['max']:.3f} s"]
                      for k, v in sorted(notice.items())])]
        lines += ["", f"- {len(runs)} runs of a {f['pool']['nodes']}-node pool "
                  f"({f['pool']['strategy']}, batch {f['pool']['batch_size']}, canary "
                  f"{f['pool']['canary']}) at {f['rate']:g} req/s; host load at the end "
                  f"{_load_at_end(f)}."]
    return lines


def render_canary_share(entries: dict[str, Any]) -> list[str]:
    """Per weight: the share each run counted, what HAProxy's weights give,
    the verdict, the failed requests and whether the weights came back."""
    lines: list[str] = []
    for key in sorted(entries):
        f = entries[key]["figures"]
        goals = {g["figure"]: g for g in f.get("goals", [])}
        rows = []
        for weight, w in sorted(f["weights"].items(), key=lambda kv: int(kv[0])):
            runs = [r for r in f.get("runs", []) if str(r.get("weight")) == weight]
            expected = sorted({e for r in runs for e in r.get("expected_shares", [])})
            goal = goals.get(f"canary share at weight {weight}")
            client = [x for x in w.get("client_shares", []) if x is not None]
            rows.append([f"{weight} %", ", ".join(f"{x:g}" for x in w["shares"]),
                         ", ".join(f"{x:g}" for x in expected) or "-",
                         ", ".join(f"{x:g}" for x in client) or "-",
                         goal_cell(goal) if goal else f"{w['median']}",
                         f"{w['failed']} of {w['requests']:,}",
                         "yes" if w["weights_restored"] else "**no**"])
        lines += _table(["weight", "share per run, HAProxy's counters (%)",
                         "share HAProxy's weights give (%)",
                         "one load stream's view (%)",
                         "median (goal: weight ± 3 points in every run)", "failed requests",
                         "weights restored"], rows)
        lines += ["", f"- {len(f.get('runs', []))} runs of a {f.get('pool')}-node pool, each "
                  f"weight step held {f.get('soak'):g} s; two load streams of {f.get('rate'):g} "
                  f"req/s; host load at the end "
                  f"{_load_at_end(f)}."]
    return lines


def _load_at_end(figures: dict[str, Any]) -> str:
    """The host's load averages at a bench's end, as a table note writes them."""
    return ", ".join(str(x) for x in figures.get("load_at_end", []))


def render_generic(entries: dict[str, Any]) -> list[str]:
    """Any bench: its goals as met/missed, then its scalar figures."""
    lines: list[str] = []
    for key in sorted(entries):
        figures = entries[key].get("figures", {})
        rows = [[g.get("figure", "?"), goal_cell(g), str(g.get("goal", ""))]
                for g in figures.get("goals", []) if isinstance(g, dict)]
        rows += [[name, _scalar(value), ""] for name, value in _flatten(figures)]
        if len(entries) > 1:
            lines += ["", f"`{key}`:", ""]
        lines += _table(["figure", "measured", "goal"], rows)
    return lines


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k in sorted(data):
            if k == "goals":
                continue
            out += _flatten(data[k], f"{prefix}{k}.")
    elif isinstance(data, list):
        if all(isinstance(x, int | float | str) for x in data) and len(data) <= 12:
            out.append((prefix.rstrip("."), ", ".join(_scalar(x) for x in data)))
    else:
        out.append((prefix.rstrip("."), data))
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "scale_sim": render_scale_sim,
    "state_store": render_state_store,
    "rollout_under_load": render_under_load,
    "rollout_overhead": render_overhead,
    "canary_share": render_canary_share,
}


def render(bench: str, data: dict[str, Any]) -> list[str]:
    """The block for one bench's JSON: its stamps, then its table."""
    entries = data.get("entries")
    if not isinstance(entries, dict):
        # A bench writing its own format (no entries): one undated entry.
        entries = {"default": {"commit": "?", "date": "?", "figures": data}}
    try:
        body = RENDERERS.get(bench, render_generic)(entries)
    except (KeyError, TypeError, AttributeError, ValueError):
        body = render_generic(entries)  # the shape changed: still show what is there
    return [f"_Generated by `bench/report.py` from `bench/results/{bench}.json`: "
            f"{_stamp_line(entries)}._", "", *body]


def regenerate(doc: str, results: Path) -> tuple[str, list[str]]:
    """``doc`` with every generated block whose JSON exists rewritten."""
    done: list[str] = []

    def block(match: re.Match[str]) -> str:
        bench = match.group(1)
        path = results / f"{bench}.json"
        if not path.exists():
            return match.group(0)
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            body = [f"_`bench/results/{bench}.json` is unreadable: {exc}_"]
        else:
            body = render(bench, data)
        done.append(bench)
        return (f"<!-- generated: {bench} -->\n" + "\n".join(body)
                + f"\n<!-- end generated: {bench} -->")

    pattern = re.compile(r"<!-- generated: (\w+) -->\n.*?<!-- end generated: \1 -->", re.S)
    return pattern.sub(block, doc), done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--print", action="store_true", help="print, change nothing")
    args = parser.parse_args(argv)
    text, done = regenerate(args.doc.read_text(), args.results)
    if args.print:
        print(text)
    else:
        args.doc.write_text(text)
    present = sorted(p.stem for p in args.results.glob("*.json"))
    print(f"regenerated: {', '.join(done) or 'nothing'}; results without a block: "
          f"{', '.join(sorted(set(present) - set(done))) or 'none'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
