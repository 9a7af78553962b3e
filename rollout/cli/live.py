"""The live view of a rollout on a terminal, drawn with rich's Live display.

It is fed by the same events as the text and JSON output
(:mod:`rollout.events`), so a rollout run here and one followed with
``rollout watch`` look alike. It shows one row per replacement (phase and time
in it), a progress bar over the nodes with an ETA, the in-service capacity
against the floor, what the rollout waits for, whether it is paused (and for
how long), the canary steps and the soak verdicts; the
event lines worth a line (failures, restores, the end) are kept below.

In-service capacity is derived from the phases: a new node counts from the
moment the LB reports it up (it leaves ``rising``), an old one stops counting
when it starts draining (or is parked, in place), and is back once restored.

Off a terminal, with ``--no-progress`` or ``--output json``, the caller's
plain sink is used unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from rollout.cli.output import Output
from rollout.events import (
    CanaryStepStarted,
    Event,
    EventSink,
    PhaseChanged,
    ReplacementDone,
    ReplacementFailed,
    ReplacementRestored,
    RolloutContinued,
    RolloutFinished,
    RolloutPaused,
    RolloutStarted,
    SoakVerdict,
    Waiting,
)

#: Phases in which the new node serves (the LB reported it up).
_NEW_SERVES = {"draining", "standby", "retiring", "done"}
#: Phases in which the old node no longer takes traffic.
_OLD_OUT = {"parking", "draining", "standby", "retiring", "done"}
_DONE = {"done", "restored", "skipped"}


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Row:
    old: str
    new: str = ""
    phase: str = "pending"
    since: float = 0.0
    wait: str = ""


@dataclass
class LiveView:
    """What the view knows so far; :meth:`feed` is its event sink and
    :meth:`__rich__` its current frame."""

    eta: float | None = None  # seconds, from the plan, when the command has one
    floor: int | None = None
    now: Callable[[], float] = time.time
    title: str = "rollout"
    total: int = 0
    base: int | None = None  # nodes in service when the rollout started
    started_at: float | None = None
    rows: dict[int, _Row] = field(default_factory=dict)
    waits: dict[str, str] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    lines: list[tuple[str, str | None]] = field(default_factory=list)
    finished: str = ""
    paused: tuple[str, float] | None = None  # why and since when the rollout holds

    def feed(self, event: Event) -> None:
        if isinstance(event, RolloutStarted):
            self.title = event.text()
            self.total = event.replacements
            self.base = self.base if self.base is not None else \
                event.replacements + event.already_on_target
            self.started_at = self.started_at or event.at
        elif isinstance(event, PhaseChanged):
            row = self.rows.setdefault(event.index, _Row(event.old_node))
            row.new, row.phase, row.since = event.new_node, event.phase, event.at
            if event.phase in _DONE:
                row.wait = ""
        elif isinstance(event, Waiting):
            key = event.node or "rollout"
            if event.index is not None and event.index in self.rows:
                self.rows[event.index].wait = event.reason
            elif event.reason:
                self.waits[key] = event.reason
            else:
                self.waits.pop(key, None)
        elif isinstance(event, SoakVerdict | CanaryStepStarted):
            self.verdicts.append(event.text())
        elif isinstance(event, RolloutPaused) and event.held:
            self.paused = (event.reason, event.at)
        elif isinstance(event, RolloutContinued):
            self.paused = None
        elif isinstance(event, RolloutFinished):
            self.finished = event.status
        if isinstance(event, ReplacementDone | ReplacementFailed | ReplacementRestored
                      | RolloutFinished) and (text := event.text()) is not None:
            self.lines = [*self.lines[-5:], (text.strip(), event.style)]

    # --- the frame -------------------------------------------------------------------

    def in_service(self) -> int | None:
        if self.base is None:
            return None
        count = self.base
        for row in self.rows.values():
            count += (row.phase in _NEW_SERVES) - (row.phase in _OLD_OUT)
        return count

    def done(self) -> int:
        return sum(row.phase in _DONE for row in self.rows.values())

    def __rich__(self) -> RenderableType:
        now = self.now()
        table = Table(expand=False, box=None, pad_edge=False)
        for col in ("#", "old", "new", "phase", "in phase", "waiting for"):
            table.add_column(col)
        for index in sorted(self.rows):
            row = self.rows[index]
            style = {"done": "green", "restored": "yellow", "restoring": "yellow"}.get(row.phase)
            table.add_row(str(index), row.old, row.new or "-", Text(row.phase, style=style or ""),
                          "" if row.phase in _DONE else _clock(now - row.since), row.wait)
        done, total = self.done(), max(self.total, 1)
        elapsed = now - self.started_at if self.started_at else 0.0
        if self.finished:
            eta = "done" if self.finished == "succeeded" else self.finished
        elif self.eta is not None:
            eta = f"ETA {_clock(max(self.eta - elapsed, 0))} (plan)"
        elif done:
            eta = f"ETA {_clock(elapsed / done * (total - done))} (so far)"
        else:
            eta = "ETA -"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=total, completed=done, width=40),
                    f"{done}/{self.total} nodes", f"elapsed {_clock(elapsed)}", eta)
        parts: list[RenderableType] = [Text(self.title, style="bold"), table, bar]
        serving = self.in_service()
        if serving is not None:
            floor = "" if self.floor is None else f" / floor {self.floor}"
            low = self.floor is not None and serving < self.floor
            parts.append(Text(f"in service {serving}{floor}", style="bold red" if low else ""))
        if self.paused is not None and not self.finished:
            reason, since = self.paused
            parts.append(Text(f"PAUSED for {_clock(now - since)}: {reason}", style="bold yellow"))
        parts += [Text(f"waiting: {k}: {v}", style="dim") for k, v in self.waits.items()]
        parts += [Text(v, style="cyan") for v in self.verdicts[-3:]]
        parts += [Text(t, style=s or "") for t, s in self.lines]
        return Group(*parts)


def live_wanted(out: Output, enabled: bool = True) -> bool:
    """Whether a command's events go to the live view."""
    return enabled and not out.json and out.stream.isatty()


@contextmanager
def progress(out: Output, *, enabled: bool = True, eta: float | None = None,
             floor: int | None = None, base: int | None = None) -> Iterator[EventSink]:
    """The event sink for a command that runs a controller: the live view on
    a terminal, else ``out.event``. The last frame stays on the screen."""
    if not live_wanted(out, enabled):
        yield out.event
        return
    view = LiveView(eta=eta, floor=floor, base=base)
    console = Console(file=out.stream, highlight=False)
    with Live(view, console=console, refresh_per_second=4, transient=False,
              redirect_stdout=False, redirect_stderr=False):
        yield view.feed


@dataclass
class BakeView:
    """``rollout build``'s view: its lines scroll above a spinner that names
    the current step and the time since the bake started."""

    now: Callable[[], float] = time.time
    started_at: float = field(default_factory=time.time)
    step: str = "starting"

    def __rich__(self) -> RenderableType:
        return Spinner("dots", Text(f"{self.step}  ({_clock(self.now() - self.started_at)})"))


@contextmanager
def bake_progress(out: Output, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """The line sink of ``rollout build``: the spinner view on a terminal,
    else ``out.line``."""
    if not live_wanted(out, enabled):
        yield out.line
        return
    view = BakeView()
    console = Console(file=out.stream, highlight=False)
    with Live(view, console=console, refresh_per_second=4, transient=True,
              redirect_stdout=False, redirect_stderr=False) as live:
        def line(text: str) -> None:
            view.step = text.strip()
            live.console.print(text, markup=False, highlight=False)

        yield line


__all__ = ["BakeView", "LiveView", "bake_progress", "live_wanted", "progress"]
