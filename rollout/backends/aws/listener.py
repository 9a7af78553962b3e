"""The ELBv2 listener whose default action forwards to one of a pool's two
target groups: what blue-green on ELBv2 turns.

The pool names both groups (``aws.target_group_arn`` and
``aws.alternate_target_group_arn``) and the listener (``aws.listener_arn``).
Neither group is "blue" for good: the roles alternate from one rollout to
the next, and the one that serves is the one the listener's default action
forwards to with a weight above 0. rollout writes that action as a weighted
forward over both groups, ``{serving: 1, idle: 0}``: a group that a listener
forwards to, even at weight 0, is in use by the load balancer, so ELBv2
health-checks its targets (a group no listener uses reports them
``unused``), and a staged green node can be seen healthy before it takes
traffic. Every change of who serves is one ``modify_listener`` call, which
ELBv2 applies as a whole: there is no moment with half the pool switched.

With a preview rule (:mod:`rollout.backends.aws.preview`), every such call is
followed by one ``modify_rule`` that points the rule at the group the
listener now leaves idle. A kill between the two leaves the preview on the
serving group for a while, which is harmless; :meth:`Listener.sync_preview`
(from the switch a resumed rollout re-asserts) puts it right from the listener's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.backends.aws.preview import PreviewRule
from rollout.backends.aws.session import AwsClients, aws_errors
from rollout.errors import ConfigError


@dataclass(frozen=True)
class Forward:
    """The listener's default action, read: each of the pool's groups with
    its weight (0 for a group the action does not name)."""

    weights: dict[str, int]
    primary: str  # aws.target_group_arn: the serving group when weights tie
    # Both groups named in the action (even at weight 0), so ELBv2 checks both.
    attached: bool = True

    @property
    def serving(self) -> str:
        """The group with the highest weight (the live pool)."""
        return max(self.weights, key=lambda arn: (self.weights[arn], arn == self.primary))

    @property
    def idle(self) -> str:
        """The other group."""
        serving = self.serving
        return next(arn for arn in self.weights if arn != serving)

    def takes_traffic(self, arn: str) -> bool:
        return self.weights.get(arn, 0) > 0


class Listener:
    """One listener and the pool's two target groups."""

    def __init__(self, listener_arn: str, groups: tuple[str, str], *,
                 clients: AwsClients, preview: PreviewRule | None = None) -> None:
        for key, arn in (("aws.listener_arn", listener_arn),
                         ("aws.alternate_target_group_arn", groups[1])):
            if not arn.startswith("arn:"):
                raise ConfigError(f"{key}: {arn!r} is not an ARN",
                                  hint="copy the ARN from the console or CLI")
        if groups[0] == groups[1]:
            raise ConfigError(
                "aws.alternate_target_group_arn: it is the same group as aws.target_group_arn",
                hint="blue-green needs a second target group for the same port")
        self.arn = listener_arn
        self.groups = groups
        self.clients = clients
        self.preview = preview

    def read(self) -> Forward:
        """The default action's weights; a ConfigError when it forwards to
        neither of the pool's groups (the listener is someone else's)."""
        with aws_errors("describe listener", self.arn):
            found = self.clients.elbv2.describe_listeners(ListenerArns=[self.arn])["Listeners"]
        actions: list[dict[str, Any]] = list(found[0].get("DefaultActions", [])) if found else []
        forward = next((a for a in actions if a.get("Type") == "forward"), None)
        weights = dict.fromkeys(self.groups, 0)
        named_arns: set[str] = set()
        if forward is not None:
            named = forward.get("ForwardConfig", {}).get("TargetGroups")
            if named:
                for group in named:
                    arn = str(group["TargetGroupArn"])
                    if arn in weights:
                        weights[arn] = int(group.get("Weight", 1))
                        named_arns.add(arn)
            elif forward.get("TargetGroupArn") in weights:
                weights[str(forward["TargetGroupArn"])] = 1
        if not any(weights.values()):
            raise ConfigError(
                f"listener {self.arn}: its default action forwards to neither "
                "aws.target_group_arn nor aws.alternate_target_group_arn "
                f"({', '.join(self.groups)})",
                hint="make the listener's default action forward to aws.target_group_arn")
        return Forward(weights, self.groups[0], attached=named_arns == set(self.groups))

    def forward(self, weights: dict[str, int]) -> None:
        """Make the default action a weighted forward over both groups, in
        one ``modify_listener`` call (ELBv2 allows weights 0..999)."""
        clamped = {arn: max(0, min(999, weights.get(arn, 0))) for arn in self.groups}
        groups = [{"TargetGroupArn": arn, "Weight": w} for arn, w in clamped.items()]
        with aws_errors("modify listener", self.arn):
            self.clients.elbv2.modify_listener(
                ListenerArn=self.arn,
                DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}])
        if self.preview is not None:
            # After the switch, never before: the listener is what decides.
            self.preview.point(Forward(clamped, self.groups[0]).idle)

    def sync_preview(self) -> bool:
        """Point the preview rule (if any) at the group the listener leaves
        idle, as it stands now; True when the rule was changed."""
        if self.preview is None:
            return False
        return self.preview.point(self.read().idle)

    def serve(self, arn: str) -> None:
        """All traffic to ``arn``, the other group kept attached at weight 0."""
        self.forward({g: (1 if g == arn else 0) for g in self.groups})

