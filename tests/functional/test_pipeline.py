"""The environment pipeline end to end on the REAL lab: ``scripts/pipeline/run-local.sh
--approve`` brings up dev, staging and prod (three labs at once, 2 nodes each),
bakes one image and rolls it through dev -> staging -> prod.

Checks: every environment ends on the image built once (``rollout status`` and
``lab status`` per environment), each deploy stage wrote its JUnit, and prod
refuses, with exit 2 and nothing touched, an image that has not passed staging.
All three labs are taken down at the end and leave nothing behind.

The pipeline's labs stay clear of the session lab. Knobs:

| variable                     | default          | meaning                                    |
|------------------------------|------------------|--------------------------------------------|
| ROLLOUT_LAB_PIPELINE_BRIDGE  | rtpip            | bridge prefix: PREFIXd, PREFIXs, PREFIXp   |
| ROLLOUT_LAB_PIPELINE_SUBNET  | 10.231.253.0/24  | split in four: dev, staging, prod, (lab)   |
| ROLLOUT_LAB_PIPELINE_PORT    | 18290            | dev's frontend port; staging +1, prod +2   |

The data directory is ROLLOUT_TEST_DATA_DIR/pipeline (else a temporary one),
so the labs' first image is baked once per machine; the pipeline's own image is
baked on every run and removed at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rollout.testing.lab import lab_skip_reason, make_project, relocate_lab
from tests.functional.leaks import leftovers

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "pipeline"
ROLLOUT = REPO / ".venv" / "bin" / "rollout"
ENVS = ("dev", "staging", "prod")


@dataclass
class Pipeline:
    """One run of the pipeline and what it left, read before the labs went down."""

    work: Path
    project: Path
    data: Path
    environ: dict[str, str]
    labs: dict[str, tuple[str, str]]  # env -> (bridge, subnet)
    run: subprocess.CompletedProcess[str] | None = None
    image_id: str = ""
    status: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    image: dict[str, Any] = field(default_factory=dict)  # as `rollout images` lists it
    refusal: subprocess.CompletedProcess[str] | None = None
    refused_image: str = ""
    prod_before_refusal: tuple[Any, Any] = ((), ())
    prod_after_refusal: tuple[Any, Any] = ((), ())

    def rollout(self, env: str, *args: str) -> Any:
        """``rollout --env ENV ARGS --output json`` on ENV's data directory."""
        proc = subprocess.run(
            [str(ROLLOUT), "--project", str(self.project), "--data-dir",
             str(self.data / "envs" / env), "--env", env, *args, "--output", "json"],
            capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"rollout {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout)

    def script(self, name: str, *args: str, timeout: float = 600, cwd: Path | None = None,
               **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPTS / name), *args], cwd=cwd or self.work,
                              env={**self.environ, **env}, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def prod_world(self) -> tuple[Any, Any]:
        """prod's nodes (name, image, LB state) and its rollout history."""
        nodes = sorted((n["name"], n["image_id"], n["lb_state"])
                       for n in self.rollout("prod", "lab", "status")["nodes"])
        return nodes, [r["id"] for r in self.rollout("prod", "history")]


def _knobs() -> tuple[dict[str, tuple[str, str]], int]:
    prefix = os.environ.get("ROLLOUT_LAB_PIPELINE_BRIDGE", "rtpip")
    net = ipaddress.ip_network(os.environ.get("ROLLOUT_LAB_PIPELINE_SUBNET", "10.231.253.0/24"))
    quarters = list(net.subnets(prefixlen_diff=2))
    port = int(os.environ.get("ROLLOUT_LAB_PIPELINE_PORT", "18290"))
    labs = {env: (f"{prefix}{env[0]}", str(quarters[i])) for i, env in enumerate(ENVS)}
    labs["lab"] = (f"{prefix}l", str(quarters[3]))
    return labs, port


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("pipeline")
    labs, port = _knobs()
    project = make_project(REPO, tmp / "project", bridge=labs["lab"][0],
                           subnet=labs["lab"][1], port=port + 3)
    for i, env in enumerate(ENVS):
        relocate_lab(project, env, bridge=labs[env][0], subnet=labs[env][1], port=port + i)
    shared = os.environ.get("ROLLOUT_TEST_DATA_DIR")
    data = Path(shared) / "pipeline" if shared else tmp / "data"
    environ = {k: v for k, v in os.environ.items() if k not in ("IMAGE_ID", "VERSION")}
    environ |= {"ROLLOUT_PROJECT": str(project), "ROLLOUT_DATA_DIR": str(data)}
    (tmp / "work").mkdir()
    run = Pipeline(tmp / "work", project, data, environ, labs)
    try:
        run.run = run.script("run-local.sh", "--approve", timeout=3600)
        assert run.run.returncode == 0, run.run.stdout[-3000:] + run.run.stderr[-5000:]
        run.image_id = (run.work / "image-id").read_text().strip()
        for env in ENVS:
            run.status[env] = run.rollout(env, "status", "--role", "web")["pools"][0]
            run.nodes[env] = run.rollout(env, "lab", "status")["nodes"]
        images = run.rollout("prod", "images", "--role", "web")
        run.image = next(i for i in images if i["id"] == run.image_id)
        # prod refuses an image that has not passed staging: the labs' first one
        run.refused_image = next(i["id"] for i in images if "staging" not in i["passed_envs"])
        run.prod_before_refusal = run.prod_world()
        # as another build would, in a workspace of its own
        (tmp / "refusal").mkdir()
        run.refusal = run.script("deploy", "prod", cwd=tmp / "refusal",
                                 IMAGE_ID=run.refused_image)
        run.prod_after_refusal = run.prod_world()
        yield run
    finally:
        down = run.script("run-local.sh", "--down", timeout=900)
        left = [thing for env, (bridge, subnet) in labs.items()
                for thing in leftovers([data / "envs" / env], bridge, subnet)]
        if run.image_id:  # the labs' first image stays cached; this one is spent
            shutil.rmtree(data / "images" / run.image_id, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-3000:]
        assert not left, "the pipeline's labs left these behind:\n" + "\n".join(left)


def test_every_environment_runs_the_image_built_once(pipeline: Pipeline) -> None:
    assert pipeline.run is not None
    builds = [e for e in map(json.loads, (pipeline.work / "build.jsonl").read_text().splitlines())
              if e.get("event") == "image_registered"]
    assert [e["id"] for e in builds] == [pipeline.image_id]
    for env in ENVS:
        last = pipeline.status[env]["last"]
        assert (last["status"], last["target_image"]) == ("succeeded", pipeline.image_id), env
        assert pipeline.status[env]["unfinished"] is None
        nodes = [n for n in pipeline.nodes[env] if n["role"] == "web"]
        assert len(nodes) == 2, nodes
        assert {(n["image_id"], n["lb_state"]) for n in nodes} == {(pipeline.image_id, "up")}
    assert pipeline.status["prod"]["last"]["target_image"] == \
        pipeline.status["dev"]["last"]["target_image"]
    assert "is in dev, staging and prod" in pipeline.run.stderr


def test_each_deploy_wrote_its_junit_and_events(pipeline: Pipeline) -> None:
    for env in ENVS:
        report = ET.parse(pipeline.work / "reports" / env / "smoke.xml").getroot()
        cases = report.findall(".//testcase")
        assert cases, f"{env}: no test case in its JUnit"
        assert not report.findall(".//failure") and not report.findall(".//error")
        events = [json.loads(line) for line in
                  (pipeline.work / "reports" / env / "events.jsonl").read_text().splitlines()]
        assert events, env


def test_the_image_carries_its_passes_and_promotions(pipeline: Pipeline) -> None:
    assert pipeline.image["passed_envs"] == sorted(ENVS)
    assert pipeline.image["promoted_to"] == ["prod", "staging"]


def test_prod_refuses_an_image_that_has_not_passed_staging(pipeline: Pipeline) -> None:
    refusal = pipeline.refusal
    assert refusal is not None
    assert refusal.returncode == 2, refusal.stderr
    assert f"image {pipeline.refused_image} may not be rolled out to 'prod'" in refusal.stderr
    assert pipeline.prod_after_refusal == pipeline.prod_before_refusal
    assert not list((pipeline.work.parent / "refusal").rglob("*.xml"))  # no smoke ran
    assert {n[1] for n in pipeline.prod_after_refusal[0]} == {pipeline.image_id}
