"""Edges of the pack's cloud rules the Stratus detonations do not reach, on CloudTrail
records shaped as AWS writes them (the AuthorizeSecurityGroupIngress flat form)."""

from __future__ import annotations

import json

import pytest

from vigil.detect.sigma import load_rules, starter_rules
from vigil.scan import scan_inputs

RULE = "vigil_aws_security_group_admin_port_open_to_internet.yml"


@pytest.mark.parametrize(
    ("ports", "cidr", "alerts"),
    [
        ((0, 65535), "0.0.0.0/0", 1),  # every port to the world
        ((22, 22), "0.0.0.0/0", 1),
        ((0, 65535), "10.0.0.0/8", 0),  # every port, inside only
        ((0, 1024), "0.0.0.0/0", 0),  # a range that is not every port (not judged here)
        ((443, 443), "0.0.0.0/0", 0),  # a web server
    ],
)
def test_a_security_group_opened_to_the_internet(ports, cidr, alerts, tmp_path) -> None:
    record = {
        "eventVersion": "1.08",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupIngress",
        "eventTime": "2026-12-03T10:00:00Z",
        "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/dev"},
        "requestParameters": {
            "groupId": "sg-0a1b2c3d",
            "cidrIp": cidr,
            "ipProtocol": "tcp",
            "fromPort": ports[0],
            "toPort": ports[1],
        },
    }
    trail = tmp_path / "trail.jsonl"
    trail.write_text(json.dumps(record) + "\n")
    rule = load_rules([starter_rules() / "cloud" / RULE], use_cache=False)
    assert len(scan_inputs([trail], rule).detections) == alerts
