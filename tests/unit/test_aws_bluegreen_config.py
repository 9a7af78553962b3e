"""The aws backend's checks of a blue-green pool: the listener and the second
target group are required, named by key, before any AWS call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollout.backends import Site
from rollout.backends.aws.backend import AwsBackend
from rollout.config import Pool, PoolSettings
from rollout.errors import ConfigError

TG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-a/1"
TG_B = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-b/2"
LISTENER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/3/4"


def pool(aws: dict[str, Any], **rollout: Any) -> Pool:
    settings = PoolSettings.model_validate({
        "provider": "aws", "load_balancer": "elbv2", "pool_size": 2,
        "aws": {"region": "eu-west-1", "target_group_arn": TG, **aws}, **rollout})
    return Pool("prod", "web", settings, Path("inventories/prod/group_vars/web.yml"))


def backend() -> AwsBackend:
    return AwsBackend(Site(Path("."), None, None))  # type: ignore[arg-type]


@pytest.mark.parametrize(("aws", "key"), [
    ({}, "rollout.aws.listener_arn"),
    ({"listener_arn": LISTENER}, "rollout.aws.alternate_target_group_arn"),
    ({"alternate_target_group_arn": TG_B}, "rollout.aws.listener_arn"),
    ({"listener_arn": LISTENER, "alternate_target_group_arn": TG},
     "rollout.aws.alternate_target_group_arn"),
])
def test_blue_green_on_aws_names_the_missing_key(aws: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        backend().validate(pool(aws, strategy="blue_green"))
    assert f"web.yml: {key}" in str(err.value)


def test_blue_green_with_both_keys_is_accepted() -> None:
    backend().validate(pool({"listener_arn": LISTENER, "alternate_target_group_arn": TG_B},
                            strategy="blue_green"))
    backend().validate(pool({}))  # a surge pool needs neither


def test_half_a_pair_is_refused_for_any_strategy() -> None:
    with pytest.raises(ConfigError, match=r"rollout\.aws\.alternate_target_group_arn"):
        backend().validate(pool({"listener_arn": LISTENER}))


def test_weight_steps_on_aws_need_the_listener_pair() -> None:
    with pytest.raises(ConfigError) as err:
        backend().validate(pool({}, canary_steps=[{"weight": 10}, {"pause": 5}]))
    assert "web.yml: rollout.aws.listener_arn: canary weight steps" in str(err.value)
    backend().validate(pool({"listener_arn": LISTENER, "alternate_target_group_arn": TG_B},
                            canary_steps=[{"weight": 10}, {"pause": 5}, {"weight": 49}]))


def test_weight_steps_of_half_or_more_are_refused_on_aws() -> None:
    with pytest.raises(ConfigError, match=r"rollout\.canary_steps: weight 50 is 50 % or more"):
        backend().validate(pool({"listener_arn": LISTENER, "alternate_target_group_arn": TG_B},
                                canary_steps=[{"weight": 10}, {"weight": 50}]))


RULE = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/3/4/5"
PAIR = {"listener_arn": LISTENER, "alternate_target_group_arn": TG_B}


def test_preview_on_aws_needs_the_preview_rule() -> None:
    with pytest.raises(ConfigError) as err:
        backend().validate(pool(PAIR, strategy="blue_green", blue_green={"preview": True}))
    assert "web.yml: rollout.aws.preview_rule_arn: blue_green.preview is on" in str(err.value)
    backend().validate(pool({**PAIR, "preview_rule_arn": RULE}, strategy="blue_green",
                            blue_green={"preview": True}))


@pytest.mark.parametrize(("aws", "key"), [
    ({}, "rollout.aws.listener_arn"),
    ({"listener_arn": LISTENER}, "rollout.aws.alternate_target_group_arn"),
])
def test_a_preview_rule_needs_the_listener_pair(aws: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        backend().validate(pool({**aws, "preview_rule_arn": RULE}))
    assert f"web.yml: {key}" in str(err.value)
    assert "preview_rule_arn" in str(err.value)
