"""How progress reaches a person or a script: rich text on a TTY, plain lines
otherwise, or one JSON object per line with ``--output json``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO


class _JsonEvent(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


_STYLE = {
    "replacement_failed": "bold red",
    "replacement_restored": "yellow",
    "replacement_done": "green",
    "rollout_finished": "bold",
    "soak_verdict": "cyan",
}


def describe(e: dict[str, Any]) -> str | None:
    """One human line for a controller event; None for events too chatty to show."""
    kind = e.get("event")
    if kind == "rollout_started":
        verb = "resuming" if e.get("resumed") else "rolling"
        return (f"{verb} {e['env']}/{e['role']} to {e['target_version']} ({e['target_image']}): "
                f"{e['replacements']} node(s) in {e['batches']} batch(es), "
                f"{e['already_on_target']} already on target, strategy {e['strategy']}")
    if kind == "phase_changed":
        return f"  [{e['index']}] {e['old_node']} -> {e['new_node']}: {e['phase']}"
    if kind == "step_finished" and not e.get("ok"):
        return f"  step {e['step']} on {e['node']} failed: {e.get('error', '')}"
    if kind == "waiting" and e.get("reason"):
        return f"  waiting: {e['node'] or 'rollout'}: {e['reason']}"
    if kind == "replacement_done":
        late = " (drain timed out)" if e.get("drain_timed_out") else ""
        return f"  replaced {e['old_node']} with {e['new_node']}{late}"
    if kind == "replacement_failed":
        return f"  FAILED {e['new_node']} in {e['phase']}: {e['error']}; restoring {e['old_node']}"
    if kind == "replacement_restored":
        return f"  restored {e['old_node']} (removed {e['new_node']}): {e['reason']}"
    if kind == "node_relaunched":
        return f"  {e['failed_node']} failed to boot ({e['reason']}): launching another"
    if kind == "retry_scheduled":
        return f"  retrying {e['step']} on {e['node']} (attempt {e['attempt']}): {e['error']}"
    if kind == "batch_done":
        return f"batch {e['batch']} done: {e['replaced']} replaced, {e['restored']} restored"
    if kind == "soak_verdict":
        verdict = "passed" if e.get("passed") else f"FAILED: {e.get('reason', '')}"
        return (f"canary soak {verdict} (5xx rate new {e['rate_new']:.4f} vs old "
                f"{e['rate_old']:.4f}, flaps {e['flaps']})")
    if kind == "rollout_finished":
        return (f"rollout {e['rollout_id']} {e['status']}: {e['replaced']} replaced, "
                f"{e['restored']} restored, {e['skipped']} skipped in {e['duration']:.1f}s"
                + (f": {e['message']}" if e.get("message") else ""))
    if kind == "node_reaped":
        verb = "would remove" if e.get("dry_run") else "removed"
        return f"{verb} {e['what']} {e['node']}: {e['reason']}"
    return None


class Output:
    def __init__(self, mode: str = "text", stream: TextIO | None = None) -> None:
        self.mode = mode
        self.stream = stream or sys.stdout
        self._console: Any = None
        if mode == "text" and self.stream.isatty():
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)

    @property
    def json(self) -> bool:
        return self.mode == "json"

    def line(self, text: str, *, style: str | None = None) -> None:
        """A progress line for people; in JSON mode it becomes a ``message`` event."""
        if self.json:
            self.record({"event": "message", "text": text})
        elif self._console is not None:
            self._console.print(text, style=style, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def record(self, data: dict[str, Any]) -> None:
        data.setdefault("ts", round(time.time(), 3))
        print(json.dumps(data, sort_keys=True, default=str), file=self.stream, flush=True)

    def event(self, event: _JsonEvent) -> None:
        data = event.to_dict()
        if self.json:
            self.record(data)
        elif (text := describe(data)) is not None:
            self.line(text, style=_STYLE.get(str(data.get("event"))))

    def document(self, data: Any) -> None:
        """A whole JSON document (for status-like commands), printed once."""
        print(json.dumps(data, indent=2, sort_keys=True, default=str), file=self.stream)

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title)
            for col in columns:
                table.add_column(col)
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
                  for i, c in enumerate(columns)]
        print(title, file=self.stream)
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
              file=self.stream)
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)),
                  file=self.stream)
