"""Pure parsers for HAProxy's ``show stat`` and ``show servers state`` (2.6).

Both are read by their header line, never by fixed column positions alone, so a
newer HAProxy that appends columns still parses. ``member`` joins one row of
each into a :class:`rollout.model.Member`.

How the model's states come from HAProxy (checked against a real 2.6.12):

| HAProxy                                     | model                          |
|---------------------------------------------|--------------------------------|
| srv_admin_state & 0x23 (FMAINT/IMAINT/RMAINT)| Admin.MAINT                   |
| srv_admin_state & 0x18 (FDRAIN/IDRAIN)      | Admin.DRAIN                    |
| anything else (0, or CMAINT 0x04 alone)     | Admin.READY                    |
| status "UP", "UP 1/2", "DRAIN", "DRAIN 1/2" | Health.UP (if a check passed)  |
| the same with check_status "INI" (no check  | Health.UNKNOWN                 |
|   has run since the server left MAINT)      |                                |
| status "DOWN", "DOWN 1/2", "NOLB"           | Health.DOWN                    |
| status "MAINT...", "no check", anything else| Health.UNKNOWN                 |

CMAINT (0x04) alone is not maintenance: HAProxy's own mask of maintenance bits
is 0x23. A ``server-template ... disabled`` slot keeps CMAINT after ``set server
... state ready`` while it takes traffic (see the recorded fixtures).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from rollout.errors import DriverError
from rollout.model import Admin, Health, Member

# srv_admin_state bits, from HAProxy 2.6's management guide ("show servers state").
FMAINT = 0x01  # forced into maintenance (set server ... state maint)
IMAINT = 0x02  # inherited from a tracked server
CMAINT = 0x04  # "disabled" in the configuration; stays set after "state ready"
FDRAIN = 0x08  # forced into drain (set server ... state drain)
IDRAIN = 0x10  # inherited drain
RMAINT = 0x20  # address resolution failed
HMAINT = 0x40  # FQDN set from the runtime API (not a maintenance state)
MAINT_BITS = FMAINT | IMAINT | RMAINT
DRAIN_BITS = FDRAIN | IDRAIN

# srv_op_state values.
OP_STOPPED, OP_STARTING, OP_RUNNING, OP_STOPPING = 0, 1, 2, 3


@dataclass(frozen=True)
class StatRow:
    """One server (or FRONTEND/BACKEND) line of ``show stat``."""

    pxname: str
    svname: str
    status: str
    scur: int = 0
    stot: int = 0
    weight: int = 0
    check_status: str = ""
    hrsp_5xx: int = 0
    chkfail: int = 0
    chkdown: int = 0
    addr: str = ""
    check_rise: int = 0
    check_fall: int = 0
    check_health: int = 0


@dataclass(frozen=True)
class ServerStateRow:
    """One server line of ``show servers state`` (format version 1)."""

    be_name: str
    srv_name: str
    srv_addr: str
    srv_op_state: int
    srv_admin_state: int
    srv_port: int
    srv_check_status: int = 0
    srv_check_result: int = 0
    srv_uweight: int | None = None  # the weight now (set weight)
    srv_iweight: int | None = None  # the weight the config gave it
    srv_check_health: int = 0
    srv_check_state: int = 0
    srv_fqdn: str = ""


def _int(value: str) -> int:
    """HAProxy leaves a counter empty when it does not apply."""
    value = value.strip()
    if not value or value == "-":
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


def parse_show_stat(text: str) -> list[StatRow]:
    """Rows of ``show stat`` CSV output, keyed by its ``# pxname,svname,...`` header."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0][2:].split(",") if lines and lines[0].startswith("# ") else []
    if "pxname" not in header or "svname" not in header:
        first = lines[0][:80] if lines else "(empty answer)"
        raise DriverError(
            f"show stat: expected a CSV header such as '# pxname,svname,...', got {first!r}",
            hint="is this an HAProxy stats socket at level admin?",
        )
    rows: list[StatRow] = []
    for record in csv.reader(io.StringIO("\n".join(lines[1:]))):
        if not record:
            continue
        f = dict(zip(header, record, strict=False))
        rows.append(
            StatRow(
                pxname=f.get("pxname", ""),
                svname=f.get("svname", ""),
                status=f.get("status", ""),
                scur=_int(f.get("scur", "")),
                stot=_int(f.get("stot", "")),
                weight=_int(f.get("weight", "")),
                check_status=f.get("check_status", "").strip(),
                hrsp_5xx=_int(f.get("hrsp_5xx", "")),
                chkfail=_int(f.get("chkfail", "")),
                chkdown=_int(f.get("chkdown", "")),
                addr=f.get("addr", ""),
                check_rise=_int(f.get("check_rise", "")),
                check_fall=_int(f.get("check_fall", "")),
                check_health=_int(f.get("check_health", "")),
            )
        )
    return rows


def parse_servers_state(text: str) -> list[ServerStateRow]:
    """Rows of ``show servers state``: a version line ``1``, a ``# be_id ...``
    header, then space-separated rows. Other ``#`` lines are comments."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        first = lines[0][:80] if lines else "(empty answer)"
        raise DriverError(
            f"show servers state: expected format version line '1', got {first!r}",
            hint="this driver reads format version 1 (HAProxy 1.6 to 3.x)",
        )
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise DriverError("show servers state: the header line '# be_id be_name ...' is missing")
    header = lines[1].lstrip("#").split()
    needed = {"be_name", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_port"}
    missing = needed - set(header)
    if missing:
        raise DriverError(
            f"show servers state: header lacks {', '.join(sorted(missing))}: {lines[1][:120]!r}"
        )
    rows: list[ServerStateRow] = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        f = dict(zip(header, line.split(), strict=False))
        rows.append(
            ServerStateRow(
                be_name=f.get("be_name", ""),
                srv_name=f.get("srv_name", ""),
                srv_addr=f.get("srv_addr", ""),
                srv_op_state=_int(f.get("srv_op_state", "")),
                srv_admin_state=_int(f.get("srv_admin_state", "")),
                srv_port=_int(f.get("srv_port", "")),
                srv_check_status=_int(f.get("srv_check_status", "")),
                srv_check_result=_int(f.get("srv_check_result", "")),
                srv_check_health=_int(f.get("srv_check_health", "")),
                srv_check_state=_int(f.get("srv_check_state", "")),
                srv_fqdn="" if f.get("srv_fqdn", "-") == "-" else f.get("srv_fqdn", ""),
                srv_uweight=_int(f["srv_uweight"]) if "srv_uweight" in f else None,
                srv_iweight=_int(f["srv_iweight"]) if "srv_iweight" in f else None,
            )
        )
    return rows


def admin_from_bits(bits: int) -> Admin:
    """The admin state from ``srv_admin_state``; maintenance wins over drain."""
    if bits & MAINT_BITS:
        return Admin.MAINT
    if bits & DRAIN_BITS:
        return Admin.DRAIN
    return Admin.READY


def health_from_stat(status: str, check_status: str = "") -> Health:
    """Health from ``show stat``'s status and check_status columns.

    "UP 1/2" is up and going down, "DOWN 1/2" down and going up: the first word
    is what HAProxy routes by. A server that is UP with check_status "INI" has
    not been checked yet (HAProxy assumes UP when a server leaves MAINT), so
    its health is UNKNOWN, not UP.
    """
    word = status.split(" ", 1)[0].upper() if status else ""
    if word in ("UP", "DRAIN"):
        return Health.UNKNOWN if check_status in ("", "INI") else Health.UP
    if word in ("DOWN", "NOLB"):
        return Health.DOWN
    return Health.UNKNOWN  # MAINT, "no check", or a status we do not know


def member(stat: StatRow, state: ServerStateRow, *, empty: bool) -> Member:
    """One LB member from the two views of the same server slot.

    ``empty`` says the slot points at the placeholder address; its target is ""
    then. Counters belong to the slot since HAProxy started: they are not reset
    when a slot is reused, so compare deltas.
    """
    return Member(
        slot=state.srv_name,
        target="" if empty else state.srv_addr,
        admin=admin_from_bits(state.srv_admin_state),
        health=health_from_stat(stat.status, stat.check_status),
        sessions=stat.scur,
        total_sessions=stat.stot,
        http_5xx=stat.hrsp_5xx,
        check_failures=stat.chkfail,
        check_downs=stat.chkdown,
        port=state.srv_port,
        weight=state.srv_uweight,
        normal_weight=state.srv_iweight,
    )
