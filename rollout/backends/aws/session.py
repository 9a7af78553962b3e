"""boto3 clients and the translation of AWS errors into rollout errors.

Credentials come only from boto3's standard chain (environment, shared config
and credentials files, SSO, instance or task role); rollout never takes keys as
arguments and never prints them. The region is ``aws.region`` from the pool's
settings, else the chain's (``AWS_REGION``/``AWS_DEFAULT_REGION``, the profile).
``AWS_ENDPOINT_URL`` (e.g. a moto server) is honoured by boto3 itself.

Every AWS call of the drivers runs inside :func:`aws_errors`, which turns a
``ClientError`` into a :class:`~rollout.errors.DriverError` (or a
:class:`~rollout.errors.ConfigError` when the input is at fault) whose message
names the action and the resource and says what to do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    WaiterError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from rollout.config import AwsSettings
from rollout.errors import ConfigError, DriverError, NotFoundError, RolloutError, TransientError

_ACCESS = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
}
# Server-side failures that AWS itself says to retry.
_UNAVAILABLE = {
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
    "RequestTimeoutException",
}
_THROTTLE = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
}
_NOT_FOUND = {
    "TargetGroupNotFound",
    "LoadBalancerNotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateId.Malformed",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidKeyPair.NotFound",
}


@dataclass
class AwsClients:
    """Lazily created boto3 clients sharing one session and one retry config.

    ``max_attempts`` counts the first call too; ``standard`` retries throttling
    and transient errors with jittered backoff, ``adaptive`` also rate-limits
    the client side (good for large pools hitting EC2's API limits).
    """

    region: str | None = None
    retry_mode: str = "standard"
    max_attempts: int = 5
    page_size: int | None = None  # None: each API's default page size
    session: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    # Creating clients from one boto3 session is not thread-safe, and the
    # controller observes the provider and the LB (EC2, ELBv2) concurrently.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: AwsSettings) -> AwsClients:
        return cls(
            region=settings.region,
            retry_mode=settings.retry_mode,
            max_attempts=settings.max_attempts,
        )

    def client(self, service: str) -> Any:
        with self._lock:
            return self._client(service)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            if self.session is None:
                self.session = boto3.session.Session(region_name=self.region)
            config = Config(
                retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
                connect_timeout=10,
                read_timeout=30,
                user_agent_extra="rollout",
            )
            try:
                self._clients[service] = self.session.client(service, config=config)
            except NoRegionError:
                raise ConfigError(
                    "no AWS region is configured",
                    hint="set aws.region in the pool's group_vars, or AWS_REGION in the "
                    "environment",
                ) from None
        return self._clients[service]

    def paginate(self, service: str, operation: str, key: str, **kwargs: Any) -> list[Any]:
        """Every item under ``key`` across all pages of ``service.operation``."""
        return paginate(self.client(service), operation, key, page_size=self.page_size, **kwargs)

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @property
    def elbv2(self) -> Any:
        return self.client("elbv2")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, action: str, resource: str) -> RolloutError:
    """A rollout error for an AWS failure of ``action`` on ``resource``.

    The message carries AWS's code and text (never credentials) and a next step.
    """
    if isinstance(exc, NoCredentialsError):
        return ConfigError(
            f"{action} {resource}: no AWS credentials found",
            hint="configure the standard chain: AWS_PROFILE, ~/.aws/credentials, SSO "
            "or an instance role (never pass keys on the command line)",
        )
    if isinstance(exc, NoRegionError):
        return ConfigError(
            f"{action} {resource}: no AWS region is configured",
            hint="set aws.region in the pool's group_vars or AWS_REGION",
        )
    if isinstance(exc, WaiterError):
        reason = getattr(exc, "last_response", None) or {}
        detail = reason.get("Error", {}).get("Message", "") if isinstance(reason, dict) else ""
        why = exc.kwargs.get("reason", exc)
        return DriverError(
            f"{action} {resource}: gave up waiting ({why}) {detail}".rstrip(),
            hint="check the resource in the AWS console; raise the timeout if AWS is slow",
        )
    if not isinstance(exc, ClientError):
        if isinstance(exc, BotoCoreError):
            # Connection and read errors (after botocore's own retries) may
            # pass; a bad parameter or a broken config will not.
            network = isinstance(exc, (BotoConnectionError, HTTPClientError))
            return (TransientError if network else DriverError)(
                f"{action} {resource}: {exc}",
                hint="check the network path to AWS and AWS_ENDPOINT_URL",
            )
        return DriverError(f"{action} {resource}: {exc}")
    code = error_code(exc)
    text = str(exc.response.get("Error", {}).get("Message", "")).strip()
    said = f"{code}: {text}" if text else code
    if code in _ACCESS:
        return DriverError(
            f"{action} {resource}: access denied ({said})",
            hint="grant the controller the permissions in docs/aws-iam-policy.json, and "
            "check that the resource carries the rollout tags the policy's conditions expect",
        )
    if code in _THROTTLE:
        return TransientError(
            f"{action} {resource}: AWS throttled the request even after retries ({said})",
            hint="retry later, use aws.retry_mode: adaptive, or raise aws.max_attempts",
        )
    if code.startswith("InvalidAMIID"):
        return NotFoundError(
            f"{action} {resource}: unknown or unusable AMI ({said})",
            hint="check the AMI id and region with `rollout images`, or bake the image again",
        )
    if code.startswith("InvalidInstanceID"):
        return NotFoundError(
            f"{action} {resource}: no such instance ({said})",
            hint="the instance may have been terminated; run `rollout reap`",
        )
    if code in _NOT_FOUND or code.endswith(".NotFound") or code.endswith("NotFoundException"):
        return NotFoundError(
            f"{action} {resource}: not found ({said})",
            hint="check the id or name in the pool's aws settings and the region",
        )
    if code in (
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "InvalidParameter",
    ):
        return DriverError(
            f"{action} {resource}: AWS rejected the request ({said})",
            hint="check the pool's aws settings against this message",
        )
    if code in (
        "InsufficientInstanceCapacity",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "LimitExceeded",
        "ResourceLimitExceeded",
    ):
        return DriverError(
            f"{action} {resource}: an AWS capacity or quota limit ({said})",
            hint="use other subnets/instance types, or ask for a quota raise",
        )
    if code in _UNAVAILABLE:
        return TransientError(
            f"{action} {resource}: AWS is briefly unavailable ({said})",
            hint="this usually passes; check the AWS Health Dashboard if it persists",
        )
    return DriverError(f"{action} {resource}: {said}")


@contextmanager
def aws_errors(action: str, resource: str) -> Iterator[None]:
    """Run AWS calls, raising :func:`translate`'s error on failure."""
    try:
        yield
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        # ResponseParserError: a garbled answer (a proxy's HTML error page...).
        raise translate(exc, action, resource) from exc


def paginate(
    client: Any, operation: str, key: str, *, page_size: int | None = None, **kwargs: Any
) -> list[Any]:
    """Every item under ``key`` across all pages of ``operation``."""
    items: list[Any] = []
    if page_size:
        kwargs["PaginationConfig"] = {"PageSize": page_size}
    for page in client.get_paginator(operation).paginate(**kwargs):
        items.extend(page.get(key, []))
    return items


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in resource.get("Tags", []) or []}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]
