"""Vigil's cloud rules against Panther's own rule tests for the same behaviour: each test
record (a CloudTrail event with the result Panther's rule expects) is read as Vigil reads
CloudTrail, and the pack's rule agrees with the expected result."""

from __future__ import annotations

import gzip
import json

import pytest

from vigil.detect.sigma import load_rules, starter_rules
from vigil.scan import scan_inputs

# Panther rule -> the pack's rule of the same behaviour
SAME = {"AWS.CloudTrail.ResourceMadePublic": "vigil_aws_s3_bucket_public_policy.yml"}


@pytest.mark.parametrize(("panther", "ours"), sorted(SAME.items()))
def test_the_pack_agrees_with_panthers_expected_results(panther, ours, need_data, tmp_path) -> None:
    tests = need_data("cloud", "panther-rule-tests", "panther_rule_tests.jsonl.gz")
    rows = [json.loads(line) for line in gzip.decompress(tests.read_bytes()).splitlines()]
    # the S3 bucket policy cases of the rule (it covers other services too)
    cases = [
        r
        for r in rows
        if r["rule_id"] == panther and r["log"].get("eventName") == "PutBucketPolicy"
    ]
    assert len(cases) == 6
    rule = load_rules([starter_rules() / "cloud" / ours], use_cache=False)
    got = {}
    for number, case in enumerate(cases):
        log = tmp_path / f"{number}.jsonl"
        log.write_text(json.dumps(case["log"]) + "\n")
        got[case["test_name"]] = bool(scan_inputs([log], rule).detections)
    assert got == {case["test_name"]: case["expected_result"] for case in cases}
    assert sum(got.values()) == 1  # made public; not: failed, restricted, no policy
