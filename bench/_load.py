"""The bench load and capacity sampling for bench/rollout_under_load.py: wrk at
a steady rate with counters for every failure, and HAProxy's in-service
count sampled at 10 Hz."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.backends.lab import haproxy_process
from rollout.paths import DataDir

# wrk's Lua hooks: a fixed delay per request keeps the rate steady (wrk alone
# would saturate both cores and slow node boots ~10x); response() counts every
# non-2xx; done() prints all counters as one JSON line.
WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad = 0 end
function delay() return %(delay_ms)d end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"ok":%%d,"non_2xx":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"timeout":%%d,"seconds":%%.3f}\\n', summary.requests, o, b,
    e.connect, e.read, e.write, e.timeout, summary.duration / 1e6))
end
"""


class Wrk:
    """wrk in the background; ``stop()`` sends SIGINT (wrk then prints its
    summary) and returns the counters."""

    def __init__(self, url: str, rate: int, connections: int, lua: Path) -> None:
        delay = max(1, round(1000 * connections / rate))
        lua.write_text(WRK_LUA % {"delay_ms": delay})
        self.proc = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", "2s", "-s", str(lua),
             url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{out}")
        data: dict[str, Any] = json.loads(line[len("WRKJSON "):])
        data["socket_errors"] = sum(data[k] for k in ("connect", "read", "write", "timeout"))
        data["failed"] = data["non_2xx"] + data["socket_errors"]
        data["rate"] = round(data["requests"] / data["seconds"], 1) if data["seconds"] else 0.0
        return data


@dataclass
class Sampler:
    """In-service servers of one backend (status UP) at ~10 Hz, from HAProxy."""

    data: DataDir
    backend: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        runtime = haproxy_process.runtime(self.data)
        while not self._stop.is_set():
            rows = runtime.show_stat(self.backend)
            up = sum(1 for r in rows if r.svname not in ("BACKEND", "FRONTEND")
                     and r.status.startswith("UP"))
            self.samples.append((time.monotonic(), up))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
