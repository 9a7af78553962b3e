"""The dark-launch gate's pure core: sampling, header stripping, comparison,
threshold edges and no traffic."""

from __future__ import annotations

import pytest

from rollout.config_shadow import OnTooFew, ShadowSettings
from rollout.core.analysis import VerdictKind
from rollout.core.shadow import (
    Request,
    Response,
    choose,
    compare,
    excluded,
    judge,
    strip,
)

OK = Response(200, 0.010, "aa")


def settings(**kw: object) -> ShadowSettings:
    return ShadowSettings.model_validate({"enabled": True, **kw})


@pytest.mark.parametrize(("path", "patterns", "out"), [
    ("/admin", ("/admin",), True),
    ("/admin/users", ("/admin",), True),
    ("/administrator", ("/admin",), False),  # a prefix is a path prefix, not a string one
    ("/api/x/delete", ("/api/*/delete",), True),
    ("/api/x/read", ("/api/*/delete",), False),
    ("/static/a.css", ("*.css",), True),
    ("/", ("/admin", "*.css"), False),
    ("/x", (), False),
])
def test_excluded_by_prefix_or_glob(path: str, patterns: tuple[str, ...], out: bool) -> None:
    assert excluded(path, patterns) is out


def test_cookie_and_authorization_are_stripped_unless_allowed() -> None:
    headers = (("Host", "web"), ("Cookie", "s=1"), ("authorization", "Bearer x"),
               ("Accept", "*/*"))
    assert strip(headers) == (("Host", "web"), ("Accept", "*/*"))
    assert strip(headers, ("cookie",)) == (("Host", "web"), ("Cookie", "s=1"), ("Accept", "*/*"))


def test_sample_is_idempotent_methods_only_newest_first_distinct() -> None:
    recorded = [Request("GET", "/a"), Request("POST", "/buy"), Request("get", "/b?x=1"),
                Request("DELETE", "/a"), Request("HEAD", "/c"), Request("GET", "/a"),
                Request("PUT", "/d"), Request("GET", "/admin/x")]
    sample = choose(recorded, settings(exclude=["/admin"], sample=10))
    assert [(r.method, r.target) for r in sample] == [
        ("GET", "/a"), ("HEAD", "/c"), ("GET", "/b?x=1")]
    assert len(choose(recorded, settings(sample=2))) == 2


def test_sample_strips_headers_before_deduplicating() -> None:
    recorded = [Request("GET", "/", (("Cookie", "a"),)), Request("GET", "/", (("Cookie", "b"),))]
    assert choose(recorded, settings()) == (Request("GET", "/"),)
    allowed = choose(recorded, settings(allow_headers=["Cookie"]))
    assert [r.headers for r in allowed] == [(("Cookie", "b"),), (("Cookie", "a"),)]


@pytest.mark.parametrize(("old", "new", "kw", "why"), [
    (OK, Response(200, 0.02, "aa"), {}, None),
    (OK, Response(204, 0.02, "bb"), {}, None),  # same class, body not compared
    (OK, Response(404, 0.01, "aa"), {}, "status 2xx became 4xx"),
    (OK, Response(None, 0.01, error="refused"), {}, "status 2xx became no answer"),
    (OK, Response(200, 0.01, "bb"), {"body_hash": True}, "the body differs"),
    (OK, Response(200, 0.51, "aa"), {"latency_tolerance": "500ms"}, None),
    (OK, Response(200, 0.52, "aa"), {"latency_tolerance": "500ms"}, "slower"),
    (Response(500, 0.01), Response(503, 0.01), {}, None),
])
def test_compare(old: Response, new: Response, kw: dict[str, object], why: str | None) -> None:
    found = compare(Request("GET", "/catalog"), old, new, settings(**kw))
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found.why
        assert found.target == "/catalog" and found.old == old.text() and found.new == new.text()


def test_head_bodies_are_not_compared() -> None:
    assert compare(Request("HEAD", "/"), OK, Response(200, 0.01, "zz"),
                   settings(body_hash=True)) is None


def _pairs(good: int, bad: int) -> list[tuple[Request, Response, Response]]:
    return ([(Request("GET", f"/ok{i}"), OK, OK) for i in range(good)]
            + [(Request("GET", f"/bad{i}"), OK, Response(404, 0.01)) for i in range(bad)])


@pytest.mark.parametrize(("good", "bad", "threshold", "kind"), [
    (10, 0, 0.0, VerdictKind.PASSED),
    (9, 1, 0.0, VerdictKind.FAILED),
    (9, 1, 0.1, VerdictKind.PASSED),   # the share equals the threshold: passes
    (8, 2, 0.1, VerdictKind.FAILED),   # just over it
    (0, 10, 0.99, VerdictKind.FAILED),
    (0, 10, 1.0, VerdictKind.PASSED),
])
def test_threshold_edges(good: int, bad: int, threshold: float, kind: VerdictKind) -> None:
    verdict = judge(good + bad, _pairs(good, bad), settings(threshold=threshold))
    assert verdict.kind is kind
    assert verdict.passes is (kind is VerdictKind.PASSED)
    assert [m.target for m in verdict.mismatches] == [f"/bad{i}" for i in range(bad)]
    assert verdict.replayed == good + bad


def test_failed_verdict_names_the_first_mismatch() -> None:
    verdict = judge(5, _pairs(4, 1), settings())
    assert "1 of 5" in verdict.reason and "GET /bad0: old 200" in verdict.reason


def test_no_traffic_is_inconclusive_and_fails_by_default() -> None:
    verdict = judge(0, [], settings())
    assert verdict.kind is VerdictKind.INCONCLUSIVE and not verdict.passes
    assert "fewer than min_requests 5" in verdict.reason


def test_too_few_requests_can_pass_through_with_a_warning() -> None:
    verdict = judge(3, _pairs(3, 0), settings(inconclusive="pass"))
    assert verdict.kind is VerdictKind.INCONCLUSIVE and verdict.passes
    assert verdict.replayed == 0 and "lets the node through" in verdict.reason
    assert settings(inconclusive="pass").inconclusive is OnTooFew.PASS


@pytest.mark.parametrize("bad", [{"exclude": ["admin"]}, {"allow_headers": ["Co okie"]},
                                 {"threshold": 1.5}, {"sample": 0}, {"colour": "red"}])
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        settings(**bad)
