"""Webhook notifications: a pool's ``notify:`` hooks hear of a rollout's start,
success, failure, restores and pauses (halted or interrupted), as
Slack-compatible JSON ``{"text": "..."}``.

A notification must never fail or slow a rollout. The controller's event sink
only puts the message on a bounded queue (a full queue drops it, with a
warning); one background thread posts, retrying with exponential backoff.
:meth:`Notifier.close` waits a bounded time for the queue to drain, so a dead
receiver delays the end of a command by at most that wait.

The webhook URL often carries its secret (Slack's do): logs name only its host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rollout.config import NotifyOn, Webhook
from rollout.core.state import RolloutStatus
from rollout.events import Event, ReplacementRestored, RolloutFinished, RolloutStarted

log = logging.getLogger("rollout.notify")

#: How a finished rollout's status is announced.
_FINISHED = {
    RolloutStatus.SUCCEEDED: NotifyOn.SUCCESS,
    RolloutStatus.FAILED: NotifyOn.FAILURE,
    RolloutStatus.ABORTED: NotifyOn.RESTORE,
    RolloutStatus.HALTED: NotifyOn.PAUSE,
    RolloutStatus.INTERRUPTED: NotifyOn.PAUSE,
}


@dataclass(frozen=True)
class Notice:
    """One message for the hooks that listen to ``on``."""

    on: NotifyOn
    text: str


def notice_for(event: Event, pool: str) -> Notice | None:
    """The notice an event makes, or None (most events make none)."""
    if isinstance(event, RolloutStarted):
        return Notice(NotifyOn.START, f"{pool}: {event.text()}")
    if isinstance(event, ReplacementRestored):
        return Notice(NotifyOn.RESTORE, f"{pool}: rollout {event.rollout_id}: "
                      f"{event.text().strip()}")
    if isinstance(event, RolloutFinished):
        try:
            on = _FINISHED[RolloutStatus(event.status)]
        except (KeyError, ValueError):
            return None
        hint = (f"; `rollout resume {event.rollout_id}` or `rollout abort {event.rollout_id}`"
                if on is NotifyOn.PAUSE else "")
        return Notice(on, f"{pool}: {event.text()}{hint}")
    return None


class PostFailed(Exception):
    """One delivery attempt failed; ``retry`` says whether another may pass."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def post_json(url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` to ``url``; raise PostFailed unless the answer is 2xx."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        # A 4xx other than 429 will not pass by itself: a wrong URL or token.
        raise PostFailed(f"HTTP {exc.code}", retry=exc.code >= 500 or exc.code == 429) from None
    except urllib.error.URLError as exc:
        raise PostFailed(str(exc.reason), retry=True) from None
    except OSError as exc:  # a timeout or a reset while reading the answer
        raise PostFailed(str(exc), retry=True) from None


def host_of(url: str) -> str:
    """What a log may say of a webhook URL: its scheme and host, not its path."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


Post = Callable[[str, bytes, float], None]
_STOP = object()


class Notifier:
    """The event sink that feeds a pool's webhooks, and its delivery thread.

    Call it with each event (it never blocks and never raises); call
    :meth:`close` once at the end. The thread starts with the first notice."""

    def __init__(self, hooks: Sequence[Webhook], pool: str, *, post: Post = post_json,
                 backoff: float = 0.5, maxsize: int = 64) -> None:
        self.hooks = tuple(hooks)
        self.pool = pool
        self.post = post
        self.backoff = backoff
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._give_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        try:
            notice = notice_for(event, self.pool)
            if notice is None or not any(notice.on in h.on for h in self.hooks):
                return
            self._start()
            self._queue.put_nowait(notice)
        except queue.Full:
            log.warning("notify: the queue is full; dropped a notice of %s", self.pool)
        except Exception:  # a notification must never stop the controller
            log.exception("notify: could not queue a notice of %s", self.pool)

    def close(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` seconds for queued notices to be delivered,
        then give up on the rest (the thread is a daemon: it never holds the
        process)."""
        thread = self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        thread.join(timeout)
        if thread.is_alive():
            self._give_up.set()
            log.warning("notify: gave up on undelivered notices of %s after %.0fs",
                        self.pool, timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_all, daemon=True,
                                                name="rollout-notify")
                self._thread.start()

    def _deliver_all(self) -> None:
        while not self._give_up.is_set():
            item = self._queue.get()
            if item is _STOP or not isinstance(item, Notice):
                return
            body = json.dumps({"text": item.text}).encode()
            for hook in self.hooks:
                if item.on in hook.on:
                    self._deliver(hook, body)

    def _deliver(self, hook: Webhook, body: bytes) -> None:
        for attempt in range(hook.retries + 1):
            try:
                self.post(hook.url, body, hook.timeout)
                self.delivered += 1
                return
            except PostFailed as exc:
                last = exc
                if not exc.retry:
                    break
            except Exception as exc:  # a broken receiver must not kill the thread
                last = PostFailed(repr(exc), retry=True)
            # Backoff doubles; closing cuts it short.
            if attempt < hook.retries and self._give_up.wait(self.backoff * 2 ** attempt):
                break
        self.failed += 1
        log.warning("notify: webhook %s of %s failed: %s", host_of(hook.url), self.pool, last)


__all__ = ["Notice", "Notifier", "PostFailed", "host_of", "notice_for", "post_json"]
