"""The blue-green preview on ELBv2: a listener rule, made by the user, whose
forward action rollout keeps pointed at the pool's idle target group
(``blue_green.preview`` with ``aws.preview_rule_arn``; docs/AWS.md).

The idle group is the one the pool's listener does not serve: before the
switch it holds the staged green pool, after it the warm blue one (what a
rollback returns to). rollout changes only the rule's actions, never its
conditions or priority: which requests reach the preview (a host header, a
path, a header) is the user's choice, and a rule rollout never creates is
one it can never leak after a crash.

What the rule forwards to is derived from the listener, never journaled:
after any change of the listener, or at the switch a resumed rollout re-asserts,
:meth:`PreviewRule.point` writes it again from the listener's state, and it
changes nothing when the rule is already right.
"""

from __future__ import annotations

from typing import Any

from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.errors import ConfigError


class PreviewRule:
    """One listener rule whose forward action names one target group."""

    def __init__(self, rule_arn: str, *, clients: AwsClients) -> None:
        if not rule_arn.startswith("arn:"):
            raise ConfigError(f"aws.preview_rule_arn: {rule_arn!r} is not an ARN",
                              hint="copy the listener rule's ARN from the console or CLI "
                              "(aws elbv2 describe-rules)")
        self.arn = rule_arn
        self.clients = clients

    def target(self) -> str | None:
        """The target group the rule forwards to (the one with the highest
        weight), None when its actions forward nowhere."""
        with aws_errors("describe listener rule", self.arn):
            rules = self.clients.elbv2.describe_rules(RuleArns=[self.arn])["Rules"]
        if not rules:
            raise ConfigError(f"aws.preview_rule_arn: listener rule {self.arn} not found",
                              hint="create the preview rule on the listener first (docs/AWS.md)")
        actions: list[dict[str, Any]] = list(rules[0].get("Actions", []))
        forward = next((a for a in actions if a.get("Type") == "forward"), None)
        if forward is None:
            return None
        groups = forward.get("ForwardConfig", {}).get("TargetGroups")
        if groups:
            best = max(groups, key=lambda g: int(g.get("Weight", 1)))
            return str(best["TargetGroupArn"])
        arn = forward.get("TargetGroupArn")
        return str(arn) if arn else None

    def point(self, group_arn: str) -> bool:
        """Make the rule forward everything to ``group_arn``, in one
        ``modify_rule`` of its actions only; nothing when it already does.
        True when the rule was changed."""
        if self.target() == group_arn:
            return False
        with aws_errors("modify listener rule", self.arn):
            self.clients.elbv2.modify_rule(
                RuleArn=self.arn,
                Actions=[{"Type": "forward", "TargetGroupArn": group_arn}])
        return True
