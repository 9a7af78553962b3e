"""Events render themselves: the line each one shows people (the CLI prints
``text()`` as is), and None for those too chatty to show."""

from __future__ import annotations

import pytest

from rollout import events as ev

CASES = [
    (ev.RolloutStarted("r1", 1.0, env="lab", role="web", target_image="web-2",
                       target_version="2.0", strategy="surge", replacements=4, batches=3,
                       already_on_target=1),
     "rolling lab/web to 2.0 (web-2): 4 node(s) in 3 batch(es), 1 already on target, "
     "strategy surge"),
    (ev.RolloutStarted("r1", 1.0, env="lab", role="web", target_image="web-2",
                       target_version="2.0", strategy="in_place", resumed=True),
     "resuming lab/web to 2.0 (web-2): 0 node(s) in 0 batch(es), 0 already on target, "
     "strategy in_place"),
    (ev.PhaseChanged("r1", 1.0, index=1, old_node="a", new_node="b", phase="booting"),
     "  [1] a -> b: booting"),
    (ev.StepStarted("r1", 1.0, index=1, node="b", step="launch"), None),
    (ev.StepFinished("r1", 1.0, node="b", step="launch", ok=True), None),
    (ev.StepFinished("r1", 1.0, node="b", step="launch", ok=False, error="boom"),
     "  step launch on b failed: boom"),
    (ev.Waiting("r1", 1.0, node="", reason="capacity"), "  waiting: rollout: capacity"),
    (ev.Waiting("r1", 1.0, node="b", reason=""), None),
    (ev.ReplacementDone("r1", 1.0, old_node="a", new_node="b", drain_timed_out=True),
     "  replaced a with b (drain timed out)"),
    (ev.ReplacementFailed("r1", 1.0, old_node="a", new_node="b", phase="smoking",
                          error="smoke test of b failed"),
     "  FAILED b in smoking: smoke test of b failed; restoring a"),
    (ev.ReplacementRestored("r1", 1.0, old_node="a", new_node="b", reason="failed"),
     "  restored a (removed b): failed"),
    (ev.NodeRelaunched("r1", 1.0, failed_node="b", reason="not ready"),
     "  b failed to boot (not ready): launching another"),
    (ev.RetryScheduled("r1", 1.0, node="a", step="start", attempt=2, error="x"),
     "  retrying start on a (attempt 2): x"),
    (ev.BatchDone("r1", 1.0, batch=1, replaced=2), "batch 1 done: 2 replaced, 0 restored"),
    (ev.SoakVerdict("r1", 1.0, passed=False, rate_new=0.2, flaps=2, reason="5xx"),
     "canary soak FAILED: 5xx (5xx rate new 0.2000 vs old 0.0000, flaps 2)"),
    (ev.RolloutFinished("r1", 1.0, status="failed", replaced=1, restored=1, duration=2.04,
                        message="budget"),
     "rollout r1 failed: 1 replaced, 1 restored, 0 skipped in 2.0s: budget"),
    (ev.NodeReaped("", 1.0, node="x", what="node", reason="orphan", dry_run=True),
     "would remove node x: orphan"),
]


@pytest.mark.parametrize(("event", "text"), CASES, ids=[c[0].kind for c in CASES])
def test_each_event_says_its_own_line(event: ev.Event, text: str | None) -> None:
    assert event.text() == text


def test_a_rebuilt_event_says_the_same() -> None:
    for event, text in CASES:
        assert ev.from_dict(event.to_dict()).text() == text


def _all_events(cls: type[ev.Event] = ev.Event) -> list[type[ev.Event]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_events(sub))
    return found


@pytest.mark.parametrize("cls", _all_events(), ids=lambda c: c.kind)
def test_to_dict_is_asdict_with_the_kind(cls: type[ev.Event]) -> None:
    """to_dict takes scalar fields as they are (a shortcut past asdict's deep
    copy): the result must stay exactly what asdict gives, for every event."""
    import dataclasses

    event = cls("r00000001", 12.5)
    assert event.to_dict() == {"event": cls.kind, **dataclasses.asdict(event)}
    values = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    nested = {k: (v, [v], {"k": (v,)}) for k, v in values.items()
              if k not in ("rollout_id", "at")}
    if nested:  # containers of the same values, as asdict rebuilds them
        odd = cls("r00000001", 12.5)
        for name, value in nested.items():  # past __post_init__'s coercions
            object.__setattr__(odd, name, value)
        assert odd.to_dict() == {"event": cls.kind, **dataclasses.asdict(odd)}
