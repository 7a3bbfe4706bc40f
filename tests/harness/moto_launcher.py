#!/usr/bin/env python3
"""Start a moto server for the Stackwright integration tests, with patches.

Usage (normally run by tests/common/mod.rs, never by hand):

    .venv/bin/python tests/harness/moto_launcher.py --port 0 --port-file F
    .venv/bin/python tests/harness/moto_launcher.py --self-test

moto deviates from real AWS in a few places that the AWS Rust SDK (or our
tests) cannot live with. Each such deviation is fixed here by one function
registered with ``@patch``: its docstring says what moto does, what AWS does
and how the patch works, and ``tests/README.md`` lists every one of them.
Patches are applied in the launcher process only, before the server starts:
the installed moto package is never modified on disk.

``--port 0`` lets the OS pick a free port; the port actually bound is written
to ``--port-file`` (atomically) once the server is listening, so parallel
tests never race for ports. The process exits when its parent dies, so a
killed test run leaves no stray servers behind.

``--self-test`` starts a server on a free port, checks every patch with real
HTTP requests (``@selftest``), prints the result and exits 0/1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from xml.etree import ElementTree

PINNED_MOTO_VERSION = "5.2.1"  # keep in sync with tests/harness/requirements.txt
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

PATCHES: list[Callable[[], None]] = []
SELFTESTS: list[Callable[[str], None]] = []


def patch(fn: Callable[[], None]) -> Callable[[], None]:
    """Register a patch. It runs once, before the server starts."""
    if not fn.__doc__:
        raise TypeError(f"patch {fn.__name__} needs a docstring")
    PATCHES.append(fn)
    return fn


def selftest(fn: Callable[[str], None]) -> Callable[[str], None]:
    """Register a check, run by --self-test against a live server URL."""
    SELFTESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------

# Root element that AWS (and the Rust SDK's deserializers) use for S3 REST-XML
# responses whose output has no payload member. moto 5.2.x builds these
# responses with its generic serializer, which names the root element
# "<Operation>Response" unless moto's own model extras
# (moto/s3/2006-03-01/service-2.moto-extras.json.gz) give a "resultWrapper".
# List taken from aws-sdk-s3 1.157's protocol_serde (`start_el.matches(..)`).
S3_XML_ROOTS = {
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "DeleteObjects": "DeleteResult",
    "GetBucketAccelerateConfiguration": "AccelerateConfiguration",
    "GetBucketAcl": "AccessControlPolicy",
    "GetBucketCors": "CORSConfiguration",
    "GetBucketLifecycleConfiguration": "LifecycleConfiguration",
    "GetBucketLogging": "BucketLoggingStatus",
    "GetBucketNotificationConfiguration": "NotificationConfiguration",
    "GetBucketRequestPayment": "RequestPaymentConfiguration",
    "GetBucketTagging": "Tagging",
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketWebsite": "WebsiteConfiguration",
    "GetObjectAcl": "AccessControlPolicy",
    "GetObjectTagging": "Tagging",
    "ListBucketAnalyticsConfigurations": "ListBucketAnalyticsConfigurationResult",
    "ListBucketInventoryConfigurations": "ListInventoryConfigurationsResult",
    "ListBucketMetricsConfigurations": "ListMetricsConfigurationsResult",
    "ListBuckets": "ListAllMyBucketsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "ListObjectVersions": "ListVersionsResult",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "ListParts": "ListPartsResult",
}


@patch
def s3_xml_root_elements() -> None:
    """S3 GetBucketVersioning (and a few others) answer with the wrong XML root.

    moto 5.2.1 answers GetBucketVersioning with
    ``<GetBucketVersioningResponse>`` where AWS sends
    ``<VersioningConfiguration>``; the AWS Rust SDK checks the root element
    and fails with "invalid root, expected VersioningConfiguration".
    GetBucketAccelerateConfiguration has the same bug. (Older moto used a
    module-level Jinja template, S3_BUCKET_GET_VERSIONING, for this; 5.2.x
    serializes from the botocore model, so there is no template to patch.)

    Fix: moto names the root from the operation's ``resultWrapper`` in its
    model extras. Add the AWS root name for every S3 operation in
    ``S3_XML_ROOTS`` whose output has no payload and no resultWrapper yet, in
    the (cached) service model moto's serializer uses.
    """
    from moto.core.utils import get_service_model

    model = get_service_model("s3")
    operations = model._service_description["operations"]  # noqa: SLF001
    shapes = model._service_description["shapes"]  # noqa: SLF001
    added = []
    for op_name, root in S3_XML_ROOTS.items():
        op = operations.get(op_name)
        if op is None or "output" not in op:
            continue
        output = op["output"]
        if "payload" in shapes.get(output["shape"], {}):
            continue
        if output.get("resultWrapper") is None:
            output["resultWrapper"] = root
            added.append(op_name)
    if "GetBucketVersioning" not in added and (
        operations["GetBucketVersioning"]["output"].get("resultWrapper")
        != "VersioningConfiguration"
    ):
        raise RuntimeError("s3_xml_root_elements: could not patch GetBucketVersioning")


@selftest
def check_s3_xml_root_elements(endpoint: str) -> None:
    bucket = "selftest-versioning"
    _http("PUT", f"{endpoint}/{bucket}")
    body = (
        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Status>Enabled</Status></VersioningConfiguration>"
    )
    _http("PUT", f"{endpoint}/{bucket}?versioning", body.encode())
    root = ElementTree.fromstring(_http("GET", f"{endpoint}/{bucket}?versioning"))
    if root.tag != f"{S3_NS}VersioningConfiguration":
        raise AssertionError(f"GetBucketVersioning root is {root.tag}")
    status = root.findtext(f"{S3_NS}Status")
    if status != "Enabled":
        raise AssertionError(f"GetBucketVersioning Status is {status!r}")
    root = ElementTree.fromstring(_http("GET", f"{endpoint}/{bucket}?accelerate"))
    if root.tag != f"{S3_NS}AccelerateConfiguration":
        raise AssertionError(f"GetBucketAccelerateConfiguration root is {root.tag}")


@patch
def rds_subnet_group_already_exists() -> None:
    """RDS CreateDBSubnetGroup silently replaces a group of the same name.

    moto 5.2.1 stores the new group over the old one and answers 200; AWS
    refuses with ``DBSubnetGroupAlreadyExists`` (HTTP 400). Stackwright relies
    on the refusal: a create whose reply was lost is retried by the SDK, and
    the provider tells its own first attempt from someone else's group by that
    error and a read-back. Without the patch a retried create would "succeed"
    against moto whatever the group held.

    Fix: wrap ``RDSBackend.create_subnet_group`` to raise the AWS error when
    the name is taken, with AWS's message.
    """
    from moto.rds.exceptions import RDSClientError
    from moto.rds.models import RDSBackend

    original = RDSBackend.create_subnet_group

    def create_subnet_group(self, subnet_name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if subnet_name in self.subnet_groups:
            raise RDSClientError(
                "DBSubnetGroupAlreadyExists",
                f"The DB subnet group '{subnet_name}' already exists.",
            )
        return original(self, subnet_name, *args, **kwargs)

    RDSBackend.create_subnet_group = create_subnet_group


@patch
def rds_restore_uses_only_the_groups_it_is_given() -> None:
    """RDS RestoreDBInstanceFromDBSnapshot copies the source's DB subnet group.

    moto 5.2.1 builds the restored instance from the snapshotted instance's
    attributes, subnet group included, when the request names no
    ``DBSubnetGroupName``; AWS puts the new instance in the default VPC's
    default subnet group unless the request names one (the parameter group
    already falls back to the engine's default in moto, as on AWS). A restore
    that forgot to pass the stack's subnet group would land in the right
    network under moto only.

    Fix: wrap ``RDSBackend.restore_db_instance_from_db_snapshot`` and, when the
    request names no subnet group, drop the copied one, leaving the instance as
    moto's CreateDBInstance leaves one created without a group.
    """
    from moto.rds.models import RDSBackend

    original = RDSBackend.restore_db_instance_from_db_snapshot

    def restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides):  # type: ignore[no-untyped-def]
        instance = original(self, from_snapshot_id, overrides)
        if not overrides.get("db_subnet_group_name"):
            instance._db_subnet_group_name = None  # noqa: SLF001
            instance.__dict__.pop("db_subnet_group", None)
        return instance

    RDSBackend.restore_db_instance_from_db_snapshot = restore_db_instance_from_db_snapshot


@patch
def rds_delete_needs_a_snapshot_choice() -> None:
    """RDS DeleteDBInstance accepts a delete that makes no final-snapshot choice.

    moto 5.2.1 deletes the instance when neither ``SkipFinalSnapshot=true`` nor
    ``FinalDBSnapshotIdentifier`` is given; AWS refuses with
    ``InvalidParameterCombination`` ("FinalDBSnapshotIdentifier is required
    unless SkipFinalSnapshot is specified"), since SkipFinalSnapshot defaults to
    false. A delete that forgot the choice would pass every test.

    Fix: wrap ``RDSBackend.delete_db_instance`` to raise the AWS error first.
    """
    from moto.rds.exceptions import InvalidParameterCombination
    from moto.rds.models import RDSBackend

    original = RDSBackend.delete_db_instance

    def delete_db_instance(self, db_instance_identifier, final_db_snapshot_identifier=None,
                           skip_final_snapshot=False, *args, **kwargs):  # type: ignore[no-untyped-def]
        skip = str(skip_final_snapshot).lower() == "true"
        if not skip and not final_db_snapshot_identifier:
            raise InvalidParameterCombination(
                "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified."
            )
        return original(self, db_instance_identifier, final_db_snapshot_identifier,
                        skip, *args, **kwargs)

    RDSBackend.delete_db_instance = delete_db_instance


@selftest
def check_rds_delete_needs_a_snapshot_choice(endpoint: str) -> None:
    import urllib.error

    try:
        _query(endpoint, "rds", {
            "Action": "DeleteDBInstance",
            "Version": "2014-10-31",
            "DBInstanceIdentifier": "selftest-no-such-db",
        })
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        if err.code != 400 or "InvalidParameterCombination" not in body:
            raise AssertionError(f"delete without a choice: HTTP {err.code} {body}") from err
    else:
        raise AssertionError("a DeleteDBInstance with no snapshot choice was accepted")


@selftest
def check_rds_restore_uses_only_the_groups_it_is_given(endpoint: str) -> None:
    ec2 = _query(endpoint, "ec2", {"Action": "DescribeSubnets", "Version": "2016-11-15"})
    subnets = [
        e.text for e in ElementTree.fromstring(ec2).iter() if e.tag.endswith("subnetId")
    ][:2]
    rds = {"Version": "2014-10-31"}
    group = {**rds, "Action": "CreateDBSubnetGroup", "DBSubnetGroupName": "selftest-restore-sg",
             "DBSubnetGroupDescription": "selftest"}
    for i, subnet in enumerate(subnets, 1):
        group[f"SubnetIds.SubnetIdentifier.{i}"] = subnet
    _query(endpoint, "rds", group)
    _query(endpoint, "rds", {
        **rds, "Action": "CreateDBInstance", "DBInstanceIdentifier": "selftest-restore-src",
        "Engine": "postgres", "DBInstanceClass": "db.t4g.micro", "AllocatedStorage": "20",
        "MasterUsername": "u", "MasterUserPassword": "selftest-pw-1",
        "DBSubnetGroupName": "selftest-restore-sg",
    })
    _query(endpoint, "rds", {
        **rds, "Action": "CreateDBSnapshot", "DBInstanceIdentifier": "selftest-restore-src",
        "DBSnapshotIdentifier": "selftest-restore-snap",
    })

    def restored_group(new_id: str, extra: dict[str, str]) -> str | None:
        body = _query(endpoint, "rds", {
            **rds, "Action": "RestoreDBInstanceFromDBSnapshot", "DBInstanceIdentifier": new_id,
            "DBSnapshotIdentifier": "selftest-restore-snap", **extra,
        })
        names = [e.text for e in ElementTree.fromstring(body).iter()
                 if e.tag.endswith("DBSubnetGroupName")]
        return names[0] if names else None

    if (got := restored_group("selftest-restored-bare", {})) is not None:
        raise AssertionError(f"a restore naming no subnet group got the source's: {got}")
    named = restored_group("selftest-restored-named", {"DBSubnetGroupName": "selftest-restore-sg"})
    if named != "selftest-restore-sg":
        raise AssertionError(f"a restore naming its subnet group got {named}")


@selftest
def check_rds_subnet_group_already_exists(endpoint: str) -> None:
    import urllib.error

    ec2 = _query(endpoint, "ec2", {"Action": "DescribeSubnets", "Version": "2016-11-15"})
    subnets = [
        e.text for e in ElementTree.fromstring(ec2).iter() if e.tag.endswith("subnetId")
    ][:2]
    params = {
        "Action": "CreateDBSubnetGroup",
        "Version": "2014-10-31",
        "DBSubnetGroupName": "selftest-sg",
        "DBSubnetGroupDescription": "selftest",
    }
    for i, subnet in enumerate(subnets, 1):
        params[f"SubnetIds.SubnetIdentifier.{i}"] = subnet
    _query(endpoint, "rds", params)
    try:
        _query(endpoint, "rds", params)
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        if err.code != 400 or "DBSubnetGroupAlreadyExists" not in body:
            raise AssertionError(f"second create: HTTP {err.code} {body}") from err
    else:
        raise AssertionError("a second CreateDBSubnetGroup of the same name succeeded")


@patch
def ec2_rule_description_by_group_id() -> None:
    """EC2 matches a group-pair rule by its whole record, description included.

    moto 5.2.1's ``SecurityGroupRule.__eq__`` compares the rule's source group
    as a dict, so ``UpdateSecurityGroupRuleDescriptionsIngress`` for a rule
    whose source is another group, sent with the new description, never finds
    the rule and silently changes nothing (200). AWS identifies a rule by
    protocol, ports and source (the group id) and updates its description.

    Fix: compare source groups by ``GroupId`` (or ``GroupName``) only.
    """
    from moto.ec2.models.security_groups import SecurityGroupRule

    original = SecurityGroupRule.__eq__

    def key(g: dict) -> tuple:  # type: ignore[type-arg]
        return (g.get("GroupId"), None if g.get("GroupId") else g.get("GroupName"))

    def __eq__(self, other):  # type: ignore[no-untyped-def]
        if self.source_group or other.source_group:
            if key(self.source_group) != key(other.source_group):
                return False
            saved = (self.source_group, other.source_group)
            self.source_group = other.source_group = {}
            try:
                return original(self, other)
            finally:
                self.source_group, other.source_group = saved
        return original(self, other)

    SecurityGroupRule.__eq__ = __eq__
    SecurityGroupRule.__hash__ = None  # type: ignore[assignment]


@patch
def ec2_delete_referenced_security_group() -> None:
    """EC2 DeleteSecurityGroup deletes a group other groups' rules refer to.

    moto 5.2.1 deletes it (200) and leaves the referring rules dangling; AWS
    refuses with ``DependencyViolation`` ("resource sg-… has a dependent
    object") until no rule of another group names it. Destroy order (the
    referring group first) would otherwise go untested.

    Fix: wrap ``SecurityGroupBackend.delete_security_group`` to raise the AWS
    error while another group's ingress or egress rule names the group.
    """
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    original = SecurityGroupBackend.delete_security_group

    def delete_security_group(self, name=None, group_id=None):  # type: ignore[no-untyped-def]
        if group_id:
            for groups in self.groups.values():
                for other in groups.values():
                    if other.id == group_id:
                        continue
                    for rule in other.ingress_rules + other.egress_rules:
                        if (rule.source_group or {}).get("GroupId") == group_id:
                            raise DependencyViolationError(
                                f"resource {group_id} has a dependent object"
                            )
        return original(self, name=name, group_id=group_id)

    SecurityGroupBackend.delete_security_group = delete_security_group


@selftest
def check_ec2_security_group_patches(endpoint: str) -> None:
    import urllib.error

    def ec2(params: dict[str, str]) -> bytes:
        return _query(endpoint, "ec2", {"Version": "2016-11-15", **params})

    def group(name: str) -> str:
        body = ec2({"Action": "CreateSecurityGroup", "GroupName": name, "GroupDescription": "selftest"})
        return next(e.text for e in ElementTree.fromstring(body).iter() if e.tag.endswith("groupId"))

    a, b = group("selftest-a"), group("selftest-b")
    rule = {
        "GroupId": b,
        "IpPermissions.1.IpProtocol": "tcp",
        "IpPermissions.1.FromPort": "80",
        "IpPermissions.1.ToPort": "80",
        "IpPermissions.1.Groups.1.GroupId": a,
        "IpPermissions.1.Groups.1.Description": "old",
    }
    ec2({"Action": "AuthorizeSecurityGroupIngress", **rule})
    ec2({"Action": "UpdateSecurityGroupRuleDescriptionsIngress", **rule,
         "IpPermissions.1.Groups.1.Description": "new"})
    body = ec2({"Action": "DescribeSecurityGroups", "GroupId.1": b}).decode()
    if "<description>new</description>" not in body:
        raise AssertionError(f"description of a group-pair rule not updated: {body}")
    try:
        ec2({"Action": "DeleteSecurityGroup", "GroupId": a})
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        if err.code != 400 or "DependencyViolation" not in text:
            raise AssertionError(f"delete of a referenced group: HTTP {err.code} {text}") from err
    else:
        raise AssertionError("a group another group's rule refers to was deleted")
    ec2({"Action": "DeleteSecurityGroup", "GroupId": b})
    ec2({"Action": "DeleteSecurityGroup", "GroupId": a})


@patch
def logs_kms_key_association() -> None:
    """CloudWatch Logs AssociateKmsKey and DisassociateKmsKey are missing.

    moto 5.2.1 has no handler for them (the request fails); AWS sets or removes
    the key that encrypts a log group's new events. ``kms_key`` changes in
    place through them.

    Fix: add both actions to ``LogsResponse``: they set or clear the group's
    ``kms_key_id``, which DescribeLogGroups already reports, and answer
    ResourceNotFoundException for an unknown group as AWS does.
    """
    from moto.logs.exceptions import ResourceNotFoundException
    from moto.logs.responses import LogsResponse

    def group(self):  # type: ignore[no-untyped-def]
        g = self.logs_backend.groups.get(self._get_param("logGroupName"))
        if g is None:
            raise ResourceNotFoundException()
        return g

    def associate_kms_key(self) -> str:  # type: ignore[no-untyped-def]
        group(self).kms_key_id = self._get_param("kmsKeyId")
        return ""

    def disassociate_kms_key(self) -> str:  # type: ignore[no-untyped-def]
        group(self).kms_key_id = None
        return ""

    LogsResponse.associate_kms_key = associate_kms_key
    LogsResponse.disassociate_kms_key = disassociate_kms_key


@selftest
def check_logs_kms_key_association(endpoint: str) -> None:
    import json as _json

    def logs(action: str, body: dict) -> dict:  # type: ignore[type-arg]
        headers = {
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/logs/"
            "aws4_request, SignedHeaders=host, Signature=0",
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Logs_20140328.{action}",
        }
        req = urllib.request.Request(f"{endpoint}/", data=_json.dumps(body).encode(),
                                     method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            text = resp.read()
        return _json.loads(text) if text else {}

    key = "arn:aws:kms:us-east-1:123456789012:key/selftest"
    logs("CreateLogGroup", {"logGroupName": "/selftest/kms"})
    logs("AssociateKmsKey", {"logGroupName": "/selftest/kms", "kmsKeyId": key})
    groups = logs("DescribeLogGroups", {"logGroupNamePrefix": "/selftest/kms"})["logGroups"]
    if groups[0].get("kmsKeyId") != key:
        raise AssertionError(f"AssociateKmsKey did not set the key: {groups}")
    logs("DisassociateKmsKey", {"logGroupName": "/selftest/kms"})
    groups = logs("DescribeLogGroups", {"logGroupNamePrefix": "/selftest/kms"})["logGroups"]
    if "kmsKeyId" in groups[0]:
        raise AssertionError(f"DisassociateKmsKey left the key: {groups}")
    logs("DeleteLogGroup", {"logGroupName": "/selftest/kms"})


@patch
def elbv2_names_and_ports_are_unique() -> None:
    """ELBv2 CreateLoadBalancer and CreateListener never find a name or port taken.

    moto 5.2.1 keys load balancers by an ARN with a random id, so its duplicate
    check never fires and a second CreateLoadBalancer of the same name makes a
    second load balancer; it checks a listener's port against a dict keyed by
    listener ARN, so a second listener on the same port is created too. AWS has
    one load balancer per name and one listener per port: a create whose
    settings differ fails with ``DuplicateLoadBalancerName`` /
    ``DuplicateListener`` (an identical one returns the existing object).
    Stackwright relies on that: a create retried after a lost reply must meet
    its first attempt's object, which the provider adopts by its ownership
    tags, instead of silently making a twin.

    Fix: wrap ``ELBv2Backend.create_load_balancer`` and ``create_listener`` to
    raise the AWS error when the name (or the load balancer's port) is taken.
    Raising for an identical retry too is stricter than AWS; the providers take
    both answers.
    """
    from moto.elbv2.exceptions import DuplicateListenerError, DuplicateLoadBalancerName
    from moto.elbv2.models import ELBv2Backend

    create_lb = ELBv2Backend.create_load_balancer
    create_listener = ELBv2Backend.create_listener

    def create_load_balancer(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(lb.name == name for lb in self.load_balancers.values()):
            raise DuplicateLoadBalancerName()
        return create_lb(self, name, *args, **kwargs)

    def create_listener_once(self, load_balancer_arn, protocol, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        lb = self.load_balancers.get(load_balancer_arn)
        if lb is not None and any(str(l.port) == str(port) for l in lb.listeners.values()):
            raise DuplicateListenerError()
        return create_listener(self, load_balancer_arn, protocol, port, *args, **kwargs)

    ELBv2Backend.create_load_balancer = create_load_balancer
    ELBv2Backend.create_listener = create_listener_once


@selftest
def check_elbv2_names_and_ports_are_unique(endpoint: str) -> None:
    import urllib.error

    ec2 = _query(endpoint, "ec2", {"Action": "DescribeSubnets", "Version": "2016-11-15"})
    subnets = [
        e.text for e in ElementTree.fromstring(ec2).iter() if e.tag.endswith("subnetId")
    ][:2]
    params = {"Action": "CreateLoadBalancer", "Version": "2015-12-01", "Name": "selftest-lb"}
    for i, subnet in enumerate(subnets, 1):
        params[f"Subnets.member.{i}"] = subnet
    body = _query(endpoint, "elasticloadbalancing", params)
    arn = next(
        e.text for e in ElementTree.fromstring(body).iter() if e.tag.endswith("LoadBalancerArn")
    )

    def refused(params: dict[str, str], code: str) -> None:
        try:
            _query(endpoint, "elasticloadbalancing", params)
        except urllib.error.HTTPError as err:
            text = err.read().decode()
            if err.code != 400 or code not in text:
                raise AssertionError(f"HTTP {err.code} {text}") from err
        else:
            raise AssertionError(f"a second {params['Action']} succeeded")

    refused(params, "DuplicateLoadBalancerName")
    listener = {
        "Action": "CreateListener",
        "Version": "2015-12-01",
        "LoadBalancerArn": arn,
        "Protocol": "HTTP",
        "Port": "80",
        "DefaultActions.member.1.Type": "fixed-response",
        "DefaultActions.member.1.FixedResponseConfig.StatusCode": "404",
    }
    _query(endpoint, "elasticloadbalancing", listener)
    refused(listener, "DuplicateListener")


# CloudWatch over Smithy RPC v2 CBOR. The path prefix the SDKs post to, one
# operation per path: /service/GraniteServiceVersion20100801/operation/<Op>.
CLOUDWATCH_TARGET = "GraniteServiceVersion20100801"
CBOR_PREFIX = f"/service/{CLOUDWATCH_TARGET}/operation/"


class CloudWatchCborAdapter:
    """WSGI middleware in front of moto: CloudWatch's CBOR requests become JSON.

    Every other request reaches moto untouched. A CBOR request is decoded and
    re-sent to moto as the awsJson1_0 protocol moto speaks (path ``/``,
    ``X-Amz-Target``, the same ``Authorization`` so moto routes it by the
    SigV4 scope); moto's JSON reply is re-encoded as CBOR by walking
    botocore's output shape of the operation, because the Rust SDK's decoder
    takes each member only in its exact CBOR type.
    """

    def __init__(self, app):  # type: ignore[no-untyped-def]
        import botocore.session

        self.app = app
        self.model = botocore.session.get_session().get_service_model("cloudwatch")

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith(CBOR_PREFIX):
            return self.app(environ, start_response)
        return self._translate(environ, start_response, path[len(CBOR_PREFIX):])

    def _translate(self, environ, start_response, op: str):  # type: ignore[no-untyped-def]
        import gzip
        import io
        import json

        import cbor2

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = _cbor_to_json(cbor2.loads(body)) if body else {}
        payload = json.dumps(request).encode()
        inner = {k: v for k, v in environ.items()
                 if k not in ("HTTP_CONTENT_ENCODING", "HTTP_SMITHY_PROTOCOL", "HTTP_ACCEPT")}
        inner.update({
            "PATH_INFO": "/",
            "RAW_URI": "/",
            "REQUEST_URI": "/",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/x-amz-json-1.0",
            "CONTENT_LENGTH": str(len(payload)),
            "HTTP_X_AMZ_TARGET": f"{CLOUDWATCH_TARGET}.{op}",
            "wsgi.input": io.BytesIO(payload),
        })
        captured: dict = {}  # type: ignore[type-arg]

        def capture(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        try:
            chunks = self.app(inner, capture)
            try:
                reply = b"".join(chunks)
            finally:
                getattr(chunks, "close", lambda: None)()
        except NotImplementedError as exc:
            captured["status"], captured["headers"] = "500 INTERNAL SERVER ERROR", []
            reply = str(exc).encode()
        status = int(captured["status"].split()[0])
        headers = {k.lower(): v for k, v in captured["headers"]}
        out_headers = [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor")]
        for name in ("x-amzn-requestid", "x-amzn-query-error"):
            if name in headers:
                out_headers.append((name, headers[name]))
        if status < 300:
            data = json.loads(reply) if reply.strip() else {}
            shape = self.model.operation_model(op).output_shape
            out = cbor2.dumps(_json_to_cbor(data, shape) if shape is not None else {})
        else:
            code, message = _error_of(reply)
            if status == 500 and (code == "InternalFailure" or "not been implemented" in message
                                  or "NotImplementedError" in message):
                # moto's "action not implemented" is final: a 500 would be retried.
                status, code = 501, "NotImplemented"
                message = message or f"moto does not implement CloudWatch {op}"
            if "x-amzn-query-error" not in headers:
                fault = "Receiver" if status >= 500 else "Sender"
                out_headers.append(("x-amzn-query-error", f"{code};{fault}"))
            out = cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message})
        out_headers.append(("Content-Length", str(len(out))))
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
                   501: "Not Implemented"}
        start_response(f"{status} {reasons.get(status, 'Status')}", out_headers)
        return [out]


def _cbor_to_json(v):  # type: ignore[no-untyped-def]
    """A decoded CBOR request as JSON values (awsJson's epoch seconds, base64 blobs)."""
    import base64
    import datetime

    import cbor2

    if isinstance(v, dict):
        return {k: _cbor_to_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_cbor_to_json(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.timestamp()
    if isinstance(v, cbor2.CBORTag) and v.tag == 1:
        return v.value
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _json_to_cbor(v, shape):  # type: ignore[no-untyped-def]
    """moto's JSON value of ``shape`` in the exact CBOR type the shape asks for."""
    import base64
    import datetime

    import cbor2

    if v is None:
        return None
    t = shape.type_name
    if t == "structure":
        out = {}
        for name, member in shape.members.items():
            if name in v and v[name] is not None:
                out[name] = _json_to_cbor(v[name], member)
        return out
    if t == "list":
        return [_json_to_cbor(x, shape.member) for x in v]
    if t == "map":
        return {k: _json_to_cbor(x, shape.value) for k, x in v.items()}
    if t == "timestamp":
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                v = datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        return cbor2.CBORTag(1, float(v))
    if t in ("double", "float"):
        return float(v)
    if t in ("integer", "long", "short", "byte"):
        return int(v)
    if t == "boolean":
        return v if isinstance(v, bool) else str(v).lower() == "true"
    if t == "blob":
        return base64.b64decode(v) if isinstance(v, str) else bytes(v)
    return str(v)


def _error_of(reply: bytes) -> tuple[str, str]:
    """The code and message of a moto error reply, JSON or query XML."""
    import json

    try:
        doc = json.loads(reply)
        code = str(doc.get("__type") or doc.get("code") or "InternalFailure")
        return code.rsplit("#", 1)[-1], str(doc.get("message") or doc.get("Message") or "")
    except ValueError:
        pass
    try:
        root = ElementTree.fromstring(reply)
        code = next((e.text for e in root.iter() if e.tag.endswith("Code")), None)
        message = next((e.text for e in root.iter() if e.tag.endswith("Message")), None)
        return code or "InternalFailure", message or ""
    except ElementTree.ParseError:
        return "InternalFailure", reply.decode(errors="replace")[:500]


@patch
def cloudwatch_rpc_v2_cbor() -> None:
    """CloudWatch speaks Smithy RPC v2 CBOR; moto speaks only its query/JSON.

    The current aws-sdk-cloudwatch (and botocore) send CloudWatch calls as
    CBOR POSTs to ``/service/GraniteServiceVersion20100801/operation/<Op>``
    and expect CBOR back; moto 5.2.1 routes nothing there (getmoto/moto issue
    9195). AWS serves all three protocols.

    Fix: wrap moto's WSGI app in ``CloudWatchCborAdapter`` (above): such a
    request is decoded (gunzipped when ``Content-Encoding: gzip``) and handed
    to moto as awsJson1_0; the reply is re-encoded by botocore's output shape
    (timestamps as tag 1, doubles as floats, blobs as byte strings), errors
    keep ``__type`` and ``x-amzn-query-error``, and an action moto lacks is a
    final 501 instead of a retried 500.
    """
    from moto.moto_server import threaded_moto_server

    dispatcher = threaded_moto_server.DomainDispatcherApplication

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        return CloudWatchCborAdapter(dispatcher(*args, **kwargs))

    threaded_moto_server.DomainDispatcherApplication = wrapped


@patch
def cloudwatch_alarm_tags() -> None:
    """CloudWatch PutMetricAlarm tags an existing alarm; DeleteAlarms keeps tags.

    moto 5.2.1 applies the ``Tags`` of every PutMetricAlarm, and deleting an
    alarm leaves its tags behind, so an alarm made again under that name (the
    same ARN) inherits them. AWS takes ``Tags`` only when the call creates the
    alarm ("any tags you specify are ignored" on an update; TagResource changes
    them) and deletes an alarm's tags with it. An update that relied on
    PutMetricAlarm for tags would pass under moto only.

    Fix: wrap ``CloudWatchBackend.put_metric_alarm`` to drop ``tags`` when the
    alarm exists, and ``delete_alarms`` to delete each alarm's tags with it.
    """
    from moto.cloudwatch.models import CloudWatchBackend

    put, delete = CloudWatchBackend.put_metric_alarm, CloudWatchBackend.delete_alarms

    def put_metric_alarm(self, name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name in self.alarms:
            kwargs["tags"] = None
        return put(self, name, *args, **kwargs)

    def delete_alarms(self, alarm_names):  # type: ignore[no-untyped-def]
        for name in alarm_names:
            if name in self.alarms:
                self.tagger.delete_all_tags_for_resource(self.alarms[name].alarm_arn)
        return delete(self, alarm_names)

    CloudWatchBackend.put_metric_alarm = put_metric_alarm
    CloudWatchBackend.delete_alarms = delete_alarms


@selftest
def check_cloudwatch_alarm_tags(endpoint: str) -> None:
    alarm = {
        "AlarmName": "selftest-tags", "Namespace": "N", "MetricName": "M",
        "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:selftest-tags"

    def tags() -> list:  # type: ignore[type-arg]
        _, _, out = _cloudwatch_cbor(endpoint, "ListTagsForResource", {"ResourceARN": arn})
        return out.get("Tags", [])

    _cloudwatch_cbor(endpoint, "PutMetricAlarm", {**alarm, "Tags": [{"Key": "a", "Value": "1"}]})
    _cloudwatch_cbor(endpoint, "PutMetricAlarm", {**alarm, "Tags": [{"Key": "b", "Value": "2"}]})
    if tags() != [{"Key": "a", "Value": "1"}]:
        raise AssertionError(f"an update's Tags were applied: {tags()}")
    _cloudwatch_cbor(endpoint, "DeleteAlarms", {"AlarmNames": ["selftest-tags"]})
    _cloudwatch_cbor(endpoint, "PutMetricAlarm", alarm)
    if tags():
        raise AssertionError(f"a re-made alarm inherited its predecessor's tags: {tags()}")
    _cloudwatch_cbor(endpoint, "DeleteAlarms", {"AlarmNames": ["selftest-tags"]})


def _cloudwatch_cbor(endpoint: str, op: str, body: dict):  # type: ignore[type-arg,no-untyped-def]
    """One CloudWatch call as the CBOR SDKs make it: (status, headers, decoded reply)."""
    import urllib.error

    import cbor2

    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/"
        "aws4_request, SignedHeaders=host, Signature=0",
        "Content-Type": "application/cbor",
        "Accept": "application/cbor",
        "smithy-protocol": "rpc-v2-cbor",
    }
    req = urllib.request.Request(f"{endpoint}{CBOR_PREFIX}{op}", data=cbor2.dumps(body),
                                 method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), cbor2.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), cbor2.loads(err.read())


@selftest
def check_cloudwatch_rpc_v2_cbor(endpoint: str) -> None:
    import json as _json

    import cbor2

    alarm = {
        "AlarmName": "selftest-cbor", "Namespace": "AWS/ApplicationELB",
        "MetricName": "TargetResponseTime", "ExtendedStatistic": "p95", "Period": 60,
        "EvaluationPeriods": 3, "Threshold": 0.5,
        "ComparisonOperator": "GreaterThanThreshold",
        "Dimensions": [{"Name": "LoadBalancer", "Value": "app/web/123"}],
    }
    status, headers, _ = _cloudwatch_cbor(endpoint, "PutMetricAlarm", alarm)
    if status != 200 or headers.get("smithy-protocol") != "rpc-v2-cbor":
        raise AssertionError(f"PutMetricAlarm over CBOR: HTTP {status} {headers}")
    _, _, out = _cloudwatch_cbor(endpoint, "DescribeAlarms", {"AlarmNames": ["selftest-cbor"]})
    (got,) = out["MetricAlarms"]
    if got["ExtendedStatistic"] != "p95" or got["Dimensions"] != alarm["Dimensions"]:
        raise AssertionError(f"DescribeAlarms over CBOR read back {got}")
    if not (isinstance(got["Threshold"], float) and type(got["Period"]) is int):
        raise AssertionError(f"numbers not in their CBOR types: {got}")
    updated = got["AlarmConfigurationUpdatedTimestamp"]
    if not (isinstance(updated, cbor2.CBORTag) and updated.tag == 1) and not hasattr(
        updated, "tzinfo"
    ):
        raise AssertionError(f"a timestamp is not CBOR tag 1: {updated!r}")
    # The JSON protocol (the AWS CLI's, with a JSON service model) sees the same alarm.
    req = urllib.request.Request(
        f"{endpoint}/", method="POST",
        data=_json.dumps({"AlarmNames": ["selftest-cbor"]}).encode(),
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
            "monitoring/aws4_request, SignedHeaders=host, Signature=0",
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"{CLOUDWATCH_TARGET}.DescribeAlarms",
        })
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        (as_json,) = _json.loads(resp.read())["MetricAlarms"]
    if as_json["Threshold"] != 0.5 or as_json["ExtendedStatistic"] != "p95":
        raise AssertionError(f"DescribeAlarms over JSON read back {as_json}")
    status, headers, err = _cloudwatch_cbor(endpoint, "SetAlarmState", {
        "AlarmName": "selftest-no-such-alarm", "StateValue": "ALARM", "StateReason": "x"})
    if status != 404 or not err.get("__type", "").endswith("ResourceNotFound") \
            or "ResourceNotFound" not in headers.get("x-amzn-query-error", ""):
        raise AssertionError(f"an error over CBOR: HTTP {status} {headers} {err}")
    status, _, err = _cloudwatch_cbor(endpoint, "DescribeAnomalyDetectors", {})
    if status != 501:
        raise AssertionError(f"an action moto lacks: HTTP {status} {err}")
    _cloudwatch_cbor(endpoint, "DeleteAlarms", {"AlarmNames": ["selftest-cbor"]})


@patch
def iam_aws_managed_policies_on_demand() -> None:
    """IAM knows no AWS managed policy unless all 1,485 are loaded at start.

    moto 5.2.1 starts with no AWS managed policies (``MOTO_IAM_LOAD_MANAGED_POLICIES``
    loads every one into every IAM backend, which is slow), so AttachRolePolicy of
    ``arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy`` fails with
    ``NoSuchEntity``; AWS has every managed policy in every account. A role that attaches
    one, the common case for ECS tasks, could not be applied under moto.

    Fix: wrap ``IAMBackend.attach_role_policy``, ``detach_role_policy`` and ``get_policy``
    to load the one AWS managed policy an ``arn:aws:iam::aws:policy/...`` ARN names from
    moto's bundled copy (``moto.iam.aws_managed_policies``) on first use. An ARN naming no
    AWS policy still fails with ``NoSuchEntity``. ListPolicies with ``Scope=AWS`` lists only
    the ones loaded so far.
    """
    import json as _json

    from moto.iam import aws_managed_policies
    from moto.iam.models import AWSManagedPolicy, IAMBackend

    parsed: dict = {}  # type: ignore[type-arg]

    def ensure(self, policy_arn: str) -> None:  # type: ignore[no-untyped-def]
        if policy_arn in self.managed_policies or ":iam::aws:policy/" not in policy_arn:
            return
        if not parsed:
            parsed.update(_json.loads(aws_managed_policies.aws_managed_policies_data))
        name = policy_arn.rsplit("/", 1)[-1]
        data = parsed.get(name)
        if data is None:
            return
        policy = AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
        if policy.arn == policy_arn:
            self.aws_managed_policies.append(policy)
            self.managed_policies[policy.arn] = policy

    for method in ("attach_role_policy", "detach_role_policy", "get_policy"):
        original = getattr(IAMBackend, method)

        def wrapped(self, policy_arn, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            ensure(self, policy_arn)
            return _original(self, policy_arn, *args, **kwargs)

        setattr(IAMBackend, method, wrapped)


@selftest
def check_iam_aws_managed_policies_on_demand(endpoint: str) -> None:
    import urllib.error

    arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    trust = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
             '{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
    iam = {"Version": "2010-05-08"}
    _query(endpoint, "iam", {**iam, "Action": "CreateRole", "RoleName": "selftest-managed",
                             "AssumeRolePolicyDocument": trust})
    _query(endpoint, "iam", {**iam, "Action": "AttachRolePolicy",
                             "RoleName": "selftest-managed", "PolicyArn": arn})
    listed = _query(endpoint, "iam", {**iam, "Action": "ListAttachedRolePolicies",
                                      "RoleName": "selftest-managed"}).decode()
    if arn not in listed:
        raise AssertionError(f"attached AWS managed policy not listed: {listed}")
    try:
        _query(endpoint, "iam", {**iam, "Action": "AttachRolePolicy",
                                 "RoleName": "selftest-managed",
                                 "PolicyArn": "arn:aws:iam::aws:policy/NoSuchPolicyAnywhere"})
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        if "NoSuchEntity" not in body:
            raise AssertionError(f"unknown AWS policy: HTTP {err.code} {body}") from err
    else:
        raise AssertionError("an unknown AWS managed policy was attached")
    _query(endpoint, "iam", {**iam, "Action": "DetachRolePolicy",
                             "RoleName": "selftest-managed", "PolicyArn": arn})
    _query(endpoint, "iam", {**iam, "Action": "DeleteRole", "RoleName": "selftest-managed"})


# ---------------------------------------------------------------------------
# ECS: moto never runs a container. The patches below make its services and
# tasks answer as AWS's do once the containers started (or failed), so the
# product reads ECS exactly as AWS answers and the tests can drive outcomes.
# ---------------------------------------------------------------------------

# Harness hooks, read from the moto server's environment at call time (tests
# set them per moto process, see tests/common/mod.rs `Moto::start_with`):
#   MOTO_ECS_SERVICE_FAILED_TASKS=N  (moto's own) every deployment of a
#       service whose circuit breaker is on fails with N failed tasks;
#   STACKWRIGHT_MOTO_TASK_EXIT_CODE=N  a task started by RunTask stops with
#       its essential container exited N (default 0).


def _ecs_failed_tasks() -> int:
    try:
        return max(int(os.environ.get("MOTO_ECS_SERVICE_FAILED_TASKS", "0")), 0)
    except ValueError:
        return 0


def _ecs_new_deployment(service, task_definition: str, state: str, reason: str,
                        status: str = "PRIMARY", failed: int = 0) -> dict:  # type: ignore[no-untyped-def,type-arg]
    from moto.core.utils import utcnow
    from moto.moto_api._internal import mock_random

    running = service.desired_count if state == "COMPLETED" else 0
    return {
        "id": f"ecs-svc/{mock_random.randint(0, 32**12)}",
        "status": status,
        "taskDefinition": task_definition,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": utcnow(),
        "updatedAt": utcnow(),
        "launchType": service.launch_type,
        "platformVersion": service.platform_version,
        "networkConfiguration": service.network_configuration or None,
        "rolloutState": state,
        "rolloutStateReason": reason,
    }


def _ecs_deploy(service, previous: str | None) -> None:  # type: ignore[no-untyped-def]
    """Open a deployment of the service's task definition, settled at once."""
    from moto.core.utils import utcnow
    from moto.moto_api._internal import mock_random

    breaker = (getattr(service, "deployment_configuration", None) or {}).get(
        "deploymentCircuitBreaker") or {}
    failed = _ecs_failed_tasks()
    td = service.task_definition
    if failed and breaker.get("enable"):
        new = _ecs_new_deployment(
            service, td, "FAILED",
            "ECS deployment circuit breaker: tasks failed to start.", failed=failed)
        events = [f"(service {service.name}) (deployment {new['id']}) deployment failed: tasks failed to start."]
        if breaker.get("rollback") and previous and previous != td:
            back = _ecs_new_deployment(
                service, previous, "COMPLETED",
                f"ECS deployment circuit breaker: rolling back to deployment of {previous}.")
            new["status"] = "ACTIVE"
            new["runningCount"] = 0
            service.deployments = [back, new]
            service.task_definition = previous
            events.append(f"(service {service.name}) rolling back to deployment {back['id']}.")
        else:
            service.deployments = [new]
        service.running_count = 0 if not (breaker.get("rollback") and previous) else service.desired_count
    else:
        service.deployments = [_ecs_new_deployment(
            service, td, "COMPLETED", "ECS deployment completed.")]
        service.running_count = service.desired_count
        events = [f"(service {service.name}) has reached a steady state."]
    service.pending_count = 0
    service.events = [
        {"id": str(mock_random.uuid4()), "createdAt": utcnow(), "message": m}
        for m in reversed(events)
    ] + list(getattr(service, "events", []) or [])[:20]


def _ecs_default_security_group(backend, nc) -> None:  # type: ignore[no-untyped-def]
    """AWS's default for an awsvpcConfiguration without securityGroups."""
    from moto.ec2.models import ec2_backends

    vpc_conf = (nc or {}).get("awsvpcConfiguration")
    if vpc_conf is not None and not vpc_conf.get("securityGroups"):
        ec2 = ec2_backends[backend.account_id][backend.region_name]
        subnet = ec2.get_subnet(vpc_conf["subnets"][0])
        default = ec2.get_security_group_from_name("default", vpc_id=subnet.vpc_id)
        vpc_conf["securityGroups"] = [default.id]


@patch
def ecs_service_create_keeps_its_settings() -> None:
    """CreateService drops deploymentConfiguration and the grace period.

    moto 5.2.1's CreateService ignores ``deploymentConfiguration`` (minimum
    and maximum percent, circuit breaker) and ``healthCheckGracePeriodSeconds``,
    so DescribeServices returns neither; AWS stores both and returns
    deploymentConfiguration with its defaults (100/200, breaker off). An
    ``awsvpcConfiguration`` without ``securityGroups`` raises a KeyError in
    moto; AWS uses the VPC's default group. A product reading AWS faithfully
    would see a perpetual diff, or crash the server.

    Fix: wrap ``create_service`` and the response handler to keep both values
    on the service (serialised by moto's attribute picker), fill AWS's
    defaults, and fill the default security group of the first subnet's VPC.
    """
    from moto.ecs import responses
    from moto.ecs.models import EC2ContainerServiceBackend

    create = EC2ContainerServiceBackend.create_service
    handler = responses.EC2ContainerServiceResponse.create_service

    def create_service(self, cluster_str, service_name, desired_count, *args, **kwargs):  # type: ignore[no-untyped-def]
        _ecs_default_security_group(self, kwargs.get("network_configuration"))
        return create(self, cluster_str, service_name, desired_count, *args, **kwargs)

    def create_service_handler(self):  # type: ignore[no-untyped-def]
        result = handler(self)
        service = self.ecs_backend._get_service(  # noqa: SLF001
            self._get_param("cluster", "default"), self._get_param("serviceName"))
        dc = self._get_param("deploymentConfiguration") or {}
        dc.setdefault("maximumPercent", 200)
        dc.setdefault("minimumHealthyPercent", 100)
        dc.setdefault("deploymentCircuitBreaker", {"enable": False, "rollback": False})
        service.deployment_configuration = dc
        grace = self._get_param("healthCheckGracePeriodSeconds")
        if grace is not None:
            service.health_check_grace_period_seconds = grace
        _ecs_deploy(service, None)
        return result

    EC2ContainerServiceBackend.create_service = create_service
    responses.EC2ContainerServiceResponse.create_service = create_service_handler


@patch
def ecs_service_deployments() -> None:
    """Services never reach a steady state; UpdateService opens no deployment.

    In moto 5.2.1 a service runs ``MOTO_ECS_SERVICE_RUNNING`` tasks whatever
    its desired count (default 0: every rollout stays IN_PROGRESS), and
    UpdateService with a new task definition stores the literal string it was
    given (``api:2``, not the ARN) and keeps the one old deployment. AWS
    answers with the ARN, opens a new PRIMARY deployment that completes once
    the tasks run, and drops the old one when it has drained; with a circuit
    breaker, a deployment whose tasks fail is FAILED (and, with rollback, the
    service goes back to the last completed task definition).

    Fix: every CreateService and every UpdateService that changes the task
    definition, network or load balancers, or forces a new deployment, opens
    a deployment settled at once: COMPLETED with ``runningCount`` = desired
    (moto runs no containers, so starting is instantaneous), or, when the
    harness hook ``MOTO_ECS_SERVICE_FAILED_TASKS`` is set and the breaker is
    on, FAILED with ECS's reason and a rollback deployment when asked for.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    update = EC2ContainerServiceBackend.update_service

    def update_service(self, props):  # type: ignore[no-untyped-def]
        cluster = props.get("cluster", "default")
        name = props["service"].split("/")[-1]
        before = self._get_service(cluster, name)  # noqa: SLF001
        previous = before.task_definition
        old_net, old_lbs = before.network_configuration, list(before.load_balancers)
        td = props.get("task_definition")
        if td:
            props["task_definition"] = self.describe_task_definition(td).arn
        force = bool(props.get("force_new_deployment"))
        service = update(self, props)
        if props.get("deployment_configuration"):
            dc = service.deployment_configuration
            dc.setdefault("maximumPercent", 200)
            dc.setdefault("minimumHealthyPercent", 100)
            dc.setdefault("deploymentCircuitBreaker", {"enable": False, "rollback": False})
        moved = (service.task_definition != previous or force
                 or service.network_configuration != old_net
                 or list(service.load_balancers) != old_lbs)
        if moved:
            _ecs_deploy(service, previous)
        else:
            for d in service.deployments:
                d["desiredCount"] = service.desired_count
                if d.get("rolloutState") == "COMPLETED":
                    d["runningCount"] = service.desired_count
        return service

    EC2ContainerServiceBackend.update_service = update_service


@patch
def ecs_run_task_without_container_memory() -> None:
    """RunTask crashes on a Fargate task whose containers set no memory.

    moto 5.2.1 sums each container's ``memory`` for placement and raises a
    TypeError on ``None``; on Fargate only the task-level cpu and memory are
    required, and AWS runs such a task.

    Fix: wrap ``_calculate_task_resource_requirements`` to count a missing
    container cpu or memory as 0.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    calc = EC2ContainerServiceBackend._calculate_task_resource_requirements  # noqa: SLF001

    def calculate(task_definition):  # type: ignore[no-untyped-def]
        saved = [dict(c) for c in task_definition.container_definitions]
        for c in task_definition.container_definitions:
            c["memory"] = c.get("memory") or 0
            c["cpu"] = c.get("cpu") or 0
        try:
            return calc(task_definition)
        finally:
            for c, orig in zip(task_definition.container_definitions, saved):
                c.clear()
                c.update(orig)

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(calculate)  # noqa: SLF001


@patch
def ecs_run_task_stops_with_an_exit_code() -> None:
    """Tasks never stop and carry no exit code.

    A task started by moto 5.2.1's RunTask stays RUNNING until StopTask, with
    no ``stopCode`` and a container exit code that is never meaningful. On
    AWS a one-off task (a migration) runs its command and stops: lastStatus
    STOPPED, ``stopCode`` EssentialContainerExited and each container's
    ``exitCode``.

    Fix (the harness hook for one-off tasks): the second DescribeTasks of a
    task started by RunTask reports it STOPPED, stopCode
    EssentialContainerExited, with every container's exitCode taken from
    ``STACKWRIGHT_MOTO_TASK_EXIT_CODE`` in the server's environment (0 when
    unset); service tasks are left as they are. Like CreateService (above),
    an awsvpcConfiguration without securityGroups gets the VPC's default.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    describe = EC2ContainerServiceBackend.describe_tasks
    run = EC2ContainerServiceBackend.run_task

    def run_task(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nc = kwargs.get("networking_configuration", args[7] if len(args) > 7 else None)
        _ecs_default_security_group(self, nc)
        tasks = run(self, *args, **kwargs)
        for t in tasks:
            t._stackwright_one_off = 0  # noqa: SLF001
        return tasks

    def describe_tasks(self, cluster_str, tasks):  # type: ignore[no-untyped-def]
        found = describe(self, cluster_str, tasks)
        for t in found:
            seen = getattr(t, "_stackwright_one_off", None)
            if seen is None:
                continue
            t._stackwright_one_off = seen + 1  # noqa: SLF001
            if seen + 1 >= 2 or t.desired_status == "STOPPED":
                code = int(os.environ.get("STACKWRIGHT_MOTO_TASK_EXIT_CODE", "0"))
                t.last_status = "STOPPED"
                t.desired_status = "STOPPED"
                t.stop_code = "EssentialContainerExited"
                t.stopped_reason = "Essential container in task exited"
                for c in t.containers:
                    c.last_status = "STOPPED"
                    c.exitCode = code
            else:
                t.last_status = "RUNNING"
        return found

    EC2ContainerServiceBackend.run_task = run_task
    EC2ContainerServiceBackend.describe_tasks = describe_tasks


def _ecs_container_strings(tasks) -> None:  # type: ignore[no-untyped-def]
    for t in tasks:
        for c in t.containers:
            for attr in ("cpu", "memory"):
                v = getattr(c, attr, None)
                if v is not None and not isinstance(v, str):
                    setattr(c, attr, str(v))


@patch
def ecs_task_container_cpu_is_a_string() -> None:
    """Task containers report ``cpu`` (and ``memory``) as numbers.

    moto 5.2.1 copies each container's ``cpu`` from the task definition (where
    it is an integer, 0 by default) into the tasks RunTask and DescribeTasks
    return; the ECS API's ``Container.cpu`` and ``Container.memory`` are
    strings, and the AWS SDKs refuse the reply ("expected string") where
    boto3 lets it through.

    Fix: the tasks RunTask and DescribeTasks return carry both as strings.
    """
    from moto.ecs.models import EC2ContainerServiceBackend

    describe = EC2ContainerServiceBackend.describe_tasks
    run = EC2ContainerServiceBackend.run_task

    def run_task(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        tasks = run(self, *args, **kwargs)
        _ecs_container_strings(tasks)
        return tasks

    def describe_tasks(self, cluster_str, tasks):  # type: ignore[no-untyped-def]
        found = describe(self, cluster_str, tasks)
        _ecs_container_strings(found)
        return found

    EC2ContainerServiceBackend.run_task = run_task
    EC2ContainerServiceBackend.describe_tasks = describe_tasks


def _ecs(endpoint: str, op: str, body: dict) -> dict:  # type: ignore[type-arg]
    import json as _json

    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ecs/"
        "aws4_request, SignedHeaders=host, Signature=0",
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonEC2ContainerServiceV20141113.{op}",
    }
    req = urllib.request.Request(f"{endpoint}/", data=_json.dumps(body).encode(),
                                 method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return _json.loads(resp.read() or b"{}")


@selftest
def check_ecs_patches(endpoint: str) -> None:
    vpc = ElementTree.fromstring(_query(endpoint, "ec2", {
        "Action": "DescribeSubnets", "Version": "2016-11-15"}))
    subnet = next(e.text for e in vpc.iter() if e.tag.endswith("subnetId"))
    _ecs(endpoint, "CreateCluster", {"clusterName": "selftest"})
    td = {"family": "selftest", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
          "cpu": "256", "memory": "512",
          "containerDefinitions": [{"name": "app", "image": "nginx"}]}
    _ecs(endpoint, "RegisterTaskDefinition", td)
    _ecs(endpoint, "CreateService", {
        "cluster": "selftest", "serviceName": "svc", "taskDefinition": "selftest:1",
        "desiredCount": 2, "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": [subnet]}},
        "deploymentConfiguration": {"minimumHealthyPercent": 50}})
    svc = _ecs(endpoint, "DescribeServices", {"cluster": "selftest", "services": ["svc"]})["services"][0]
    assert svc["deploymentConfiguration"]["minimumHealthyPercent"] == 50, svc
    assert svc["deploymentConfiguration"]["maximumPercent"] == 200, svc
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED", svc
    assert svc["runningCount"] == 2, svc
    _ecs(endpoint, "RegisterTaskDefinition", td)
    _ecs(endpoint, "UpdateService", {"cluster": "selftest", "service": "svc", "taskDefinition": "selftest:2"})
    svc = _ecs(endpoint, "DescribeServices", {"cluster": "selftest", "services": ["svc"]})["services"][0]
    assert svc["taskDefinition"].endswith(":task-definition/selftest:2"), svc
    assert len(svc["deployments"]) == 1 and svc["deployments"][0]["taskDefinition"] == svc["taskDefinition"], svc
    task = _ecs(endpoint, "RunTask", {
        "cluster": "selftest", "taskDefinition": "selftest:2", "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": [subnet]}}})["tasks"][0]
    for _ in range(2):
        t = _ecs(endpoint, "DescribeTasks", {"cluster": "selftest", "tasks": [task["taskArn"]]})["tasks"][0]
    assert t["lastStatus"] == "STOPPED" and t["containers"][0]["exitCode"] == 0, t
    assert isinstance(task["containers"][0]["cpu"], str), task
    assert isinstance(t["containers"][0]["cpu"], str), t


# ---------------------------------------------------------------------------
# Plumbing
# ---------------------------------------------------------------------------


def _http(method: str, url: str, body: bytes | None = None) -> bytes:
    # moto routes requests by the SigV4 credential scope; "s3" is enough here.
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/"
        "aws4_request, SignedHeaders=host, Signature=0",
        "Content-Type": "application/xml",
    }
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return resp.read()


def _query(endpoint: str, service: str, params: dict[str, str]) -> bytes:
    """A query-protocol (form-encoded POST) request, routed by its credential scope."""
    import urllib.parse

    headers = {
        "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/"
        "aws4_request, SignedHeaders=host, Signature=0",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(f"{endpoint}/", data=body, method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        return resp.read()


def check_moto_version() -> str:
    version = importlib.metadata.version("moto")
    if version != PINNED_MOTO_VERSION:
        warnings.warn(
            f"moto {version} is installed but the harness is pinned to "
            f"{PINNED_MOTO_VERSION}: patches may not apply; run scripts/setup.sh",
            stacklevel=1,
        )
    return version


def apply_patches() -> None:
    if os.environ.get("STACKWRIGHT_MOTO_NO_PATCHES"):
        # For checking whether a patch is still needed; never set in CI.
        print("STACKWRIGHT_MOTO_NO_PATCHES is set: moto runs UNPATCHED", file=sys.stderr)
        PATCHES.clear()
        return
    for fn in PATCHES:
        try:
            fn()
        except Exception as exc:  # make a broken patch loud, never silent
            raise RuntimeError(f"moto patch {fn.__name__} failed: {exc}") from exc


def start_server(host: str, port: int):
    import werkzeug.serving

    from moto.server import ThreadedMotoServer

    # Plain request log lines (no ANSI colours) in the harness's moto.log.
    werkzeug.serving._log_add_style = False  # noqa: SLF001

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server


def write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def self_test(host: str) -> int:
    server = start_server(host, 0)
    bound_host, port = server.get_host_and_port()
    endpoint = f"http://{bound_host}:{port}"
    failed = 0
    for check in SELFTESTS:
        try:
            check(endpoint)
            print(f"ok   {check.__name__}")
        except Exception as exc:
            failed += 1
            print(f"FAIL {check.__name__}: {exc}")
    server.stop()
    print(f"moto self-test: {len(SELFTESTS) - failed} of {len(SELFTESTS)} checks ok")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: let the OS pick")
    parser.add_argument("--port-file", help="write the bound port here when ready")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)

    # Requests are logged by werkzeug to stderr; the harness sends stderr to
    # a log file. Nothing but --self-test output goes to stdout.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    version = check_moto_version()
    apply_patches()
    names = ", ".join(fn.__name__ for fn in PATCHES)
    print(f"moto {version}, patches applied: {names}", file=sys.stderr, flush=True)

    if args.self_test:
        return self_test(args.host)

    server = start_server(args.host, args.port)
    host, port = server.get_host_and_port()
    print(f"moto listening on http://{host}:{port}", file=sys.stderr, flush=True)
    if args.port_file:
        write_port_file(args.port_file, port)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # parent died: we were re-parented
            break
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
