"""How progress reaches a person or a script: rich text on a TTY, plain lines
otherwise, or one JSON object per line with ``--output json``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rollout.events import Event


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

    def event(self, event: Event) -> None:
        """A controller event: its JSON, or its own line of text (if it has one)."""
        if self.json:
            self.record(event.to_dict())
        elif (text := event.text()) is not None:
            self.line(text, style=event.style)

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
