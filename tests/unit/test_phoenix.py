"""Phoenix decisions: age selection, budgets, maintenance windows, pool health."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollout.core.phoenix import (
    PhoenixBudget,
    parse_max_age,
    parse_window,
    pool_health_problem,
    select_for_phoenix,
)
from rollout.errors import ConfigError
from rollout.model import Admin, Health, Member, Node, NodeState

DAY = 86400.0
H = 3600.0
# Wednesday 2024-05-15 03:00 UTC
NOW = datetime(2024, 5, 15, 3, 0, tzinfo=UTC).timestamp()


def node(name: str, age_days: float, *, image: str = "web-1", state: NodeState =
         NodeState.RUNNING) -> Node:
    return Node(name=name, address=f"10.0.0.{len(name)}", role="web", env="lab",
                image_id=image, image_version="1", state=state,
                created_at=NOW - age_days * DAY)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# -- age selection ------------------------------------------------------------

@pytest.mark.parametrize(
    ("ages", "max_age_days", "replaced"),
    [
        ({"a": 1, "b": 2}, 7, []),
        ({"a": 8, "b": 2, "c": 10}, 7, ["c", "a"]),  # oldest first
        ({"a": 7, "b": 7.001}, 7, ["b"]),  # exactly max-age is not older than it
        ({"b": 9, "a": 9}, 7, ["a", "b"]),  # same age: by name
        ({}, 7, []),
    ],
)
def test_selects_nodes_older_than_max_age_oldest_first(
    ages: dict[str, float], max_age_days: float, replaced: list[str]
) -> None:
    nodes = [node(n, a) for n, a in ages.items()]
    decision = select_for_phoenix(nodes, now=NOW, max_age=max_age_days * DAY)
    assert decision.allowed
    assert [n.name for n in decision.replace] == replaced
    young = {n for n, a in ages.items() if n not in replaced}
    assert {s.node for s in decision.skipped} == young
    assert all("within max-age" in s.reason for s in decision.skipped)


def test_nodes_not_running_are_skipped_with_their_state() -> None:
    nodes = [node("a", 30), node("b", 30, state=NodeState.PENDING),
             node("c", 30, state=NodeState.STOPPED)]
    decision = select_for_phoenix(nodes, now=NOW, max_age=7 * DAY)
    assert [n.name for n in decision.replace] == ["a"]
    assert {s.node: s.reason for s in decision.skipped} == {
        "b": "not running (pending)", "c": "not running (stopped)"}


def test_replacements_use_the_image_the_pool_runs() -> None:
    decision = select_for_phoenix([node("a", 30, image="web-7")], now=NOW, max_age=DAY)
    assert decision.image_id == "web-7"


def test_a_pool_running_two_images_is_not_touched() -> None:
    nodes = [node("a", 30, image="web-1"), node("b", 30, image="web-2")]
    decision = select_for_phoenix(nodes, now=NOW, max_age=DAY)
    assert not decision.allowed
    assert decision.replace == ()
    assert "web-1, web-2" in decision.reason and "unfinished" in decision.reason


def test_rerun_after_a_partial_run_only_takes_what_is_left() -> None:
    # First run replaced "a" (now a fresh node "a2"); the re-run picks "b" only.
    nodes = [node("a2", 0.01), node("b", 9)]
    decision = select_for_phoenix(nodes, now=NOW, max_age=7 * DAY)
    assert [n.name for n in decision.replace] == ["b"]


# -- budgets --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("per_run", "per_day", "history_hours_ago", "allowed", "replaced"),
    [
        (None, None, [], True, ["d", "c", "b", "a"]),
        (2, None, [], True, ["d", "c"]),
        (None, 3, [1, 2], True, ["d"]),
        (None, 3, [1, 2, 3], False, []),
        (None, 3, [1, 2, 25], True, ["d"]),  # 25 h ago is outside the rolling day
        (None, 3, [23.9, 24.0, 30], True, ["d", "c"]),  # exactly 24 h ago has left
        (1, 5, [], True, ["d"]),
        (3, 2, [1], True, ["d"]),
    ],
)
def test_budgets_cap_the_nodes_taken(
    per_run: int | None, per_day: int | None, history_hours_ago: list[float],
    allowed: bool, replaced: list[str],
) -> None:
    nodes = [node("a", 8), node("b", 9), node("c", 10), node("d", 11)]
    decision = select_for_phoenix(
        nodes, now=NOW, max_age=7 * DAY, budget=PhoenixBudget(per_run, per_day),
        history=[NOW - h * H for h in history_hours_ago],
    )
    assert decision.allowed is allowed
    assert [n.name for n in decision.replace] == replaced
    due = ["d", "c", "b", "a"]
    assert list(decision.deferred) == [n for n in due if n not in replaced]


def test_a_spent_daily_budget_says_when_the_next_replacement_is_allowed() -> None:
    history = [NOW - 20 * H, NOW - 2 * H]
    decision = select_for_phoenix([node("a", 9)], now=NOW, max_age=7 * DAY,
                                  budget=PhoenixBudget(per_day=2), history=history)
    assert not decision.allowed
    assert "2 of 2 nodes replaced in the last 24 h" in decision.reason
    # the older of the two leaves the rolling day 4 h from now
    assert "2024-05-15 07:00 UTC" in decision.reason


@pytest.mark.parametrize("bad", [0, -1])
def test_budgets_must_be_positive(bad: int) -> None:
    with pytest.raises(ConfigError, match="--max-per-day"):
        PhoenixBudget(per_day=bad)
    with pytest.raises(ConfigError, match="--max-per-run"):
        PhoenixBudget(per_run=bad)


# -- maintenance windows ----------------------------------------------------------

@pytest.mark.parametrize(
    ("window", "moment", "is_open"),
    [
        ("Mon-Fri 02:00-04:00 UTC", "2024-05-15 03:00", True),  # Wednesday
        ("Mon-Fri 02:00-04:00 UTC", "2024-05-15 04:00", False),  # the end is exclusive
        ("Mon-Fri 02:00-04:00 UTC", "2024-05-15 02:00", True),
        ("Mon-Fri 02:00-04:00 UTC", "2024-05-18 03:00", False),  # Saturday
        ("daily 01:00-03:00", "2024-05-18 01:30", True),
        ("Sat,Sun 01:00-03:00", "2024-05-19 02:59", True),
        ("Fri 23:00-01:00", "2024-05-18 00:30", True),  # Friday's span, Saturday morning
        ("Fri 23:00-01:00", "2024-05-17 00:30", False),  # Friday morning belongs to Thu
        ("Fri-Mon 10:00-11:00", "2024-05-20 10:30", True),  # wraps over the weekend
        ("Fri-Mon 10:00-11:00", "2024-05-21 10:30", False),
        ("daily 00:00-24:00", "2024-05-21 23:59", True),
        ("Mon 02:00-03:00; Thu 02:00-03:00", "2024-05-16 02:10", True),
        # 02:00-04:00 in Berlin is 00:00-02:00 UTC in summer (CEST)
        ("daily 02:00-04:00 Europe/Berlin", "2024-05-15 00:30", True),
        ("daily 02:00-04:00 Europe/Berlin", "2024-05-15 02:30", False),
    ],
)
def test_window_open(window: str, moment: str, is_open: bool) -> None:
    assert parse_window(window).is_open(at(moment)) is is_open


def test_outside_the_window_nothing_is_replaced_and_the_next_opening_is_named() -> None:
    window = parse_window("Mon-Fri 02:00-04:00 UTC")
    saturday = at("2024-05-18 03:00")
    nodes = [node("a", 30)]
    decision = select_for_phoenix(nodes, now=saturday, max_age=7 * DAY, window=window)
    assert not decision.allowed
    assert decision.replace == ()
    assert decision.deferred == ("a",)
    assert "outside the maintenance window Mon-Fri 02:00-04:00 UTC" in decision.reason
    assert "2024-05-20 02:00 UTC" in decision.reason  # Monday


def test_inside_the_window_the_decision_says_when_it_closes() -> None:
    window = parse_window("daily 02:00-04:00")
    decision = select_for_phoenix([node("a", 30)], now=NOW, max_age=7 * DAY, window=window)
    assert decision.allowed
    assert decision.closes_at == at("2024-05-15 04:00")


def test_nothing_due_is_allowed_even_outside_the_window() -> None:
    window = parse_window("Sun 02:00-03:00")
    decision = select_for_phoenix([node("a", 1)], now=NOW, max_age=7 * DAY, window=window)
    assert decision.allowed and decision.replace == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("weekdays 02:00-04:00", "not a day"),
        ("Mon-Fri 2-4", "not a maintenance window"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 02:60-03:00", "not a time of day"),
        ("Mon 24:00-02:00", "not a time of day"),
        ("Mon 02:00-02:00", "same time"),
        ("Mon 02:00-03:00 Mars/Olympus", "unknown time zone"),
        ("", "not a maintenance window"),
    ],
)
def test_bad_windows_name_the_option(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_window(text, option="rollout.core.phoenix.window")
    assert str(err.value).startswith("rollout.core.phoenix.window: ")
    assert fragment in str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * DAY), ("36h", 36 * H), ("90m", 5400)])
def test_max_age(text: str, seconds: float) -> None:
    assert parse_max_age(text) == seconds


@pytest.mark.parametrize("text", ["7 days", "-1d", ""])
def test_bad_max_age_names_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--max-age: "):
        parse_max_age(text)


# -- pool health --------------------------------------------------------------------

def member(target: str, admin: Admin = Admin.READY, health: Health = Health.UP) -> Member:
    return Member(slot=f"s-{target}", target=target, admin=admin, health=health)


def test_a_healthy_pool_has_no_problem() -> None:
    nodes = [node("a", 9), node("bb", 9)]
    members = [member(n.address) for n in nodes]
    assert pool_health_problem(nodes, members, floor=2) is None


def test_a_node_out_of_service_makes_the_pool_unhealthy() -> None:
    nodes = [node("a", 9), node("bb", 9), node("ccc", 9)]
    members = [member(nodes[0].address), member(nodes[1].address, health=Health.DOWN),
               member(nodes[2].address)]
    problem = pool_health_problem(nodes, members, floor=2)
    assert problem is not None and "bb" in problem and "rollout replace" in problem


def test_below_the_floor_is_unhealthy() -> None:
    nodes = [node("a", 9), node("bb", 9)]
    members = [member(nodes[0].address), member(nodes[1].address, admin=Admin.MAINT)]
    problem = pool_health_problem(nodes, members, floor=2)
    assert problem is not None and "only 1 nodes are in service, below the floor of 2" in problem


def test_a_zero_max_age_makes_every_running_node_due() -> None:
    # `rollout phoenix --max-age 0s` is the explicit full refresh of a pool.
    assert parse_max_age("0s") == 0.0
    decision = select_for_phoenix([node("a", 1), node("bb", 0.001)], now=NOW, max_age=0)
    assert [n.name for n in decision.replace] == ["a", "bb"]


def test_a_negative_max_age_is_refused() -> None:
    with pytest.raises(ConfigError, match="--max-age"):
        select_for_phoenix([node("a", 1)], now=NOW, max_age=-1)
