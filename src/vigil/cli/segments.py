"""`vigil segments`: micro-segmentation from the command line: learn a least-privilege flow
policy from observed flows, stage it (what it would block), check flows against it, compile
it to an nftables ruleset, and promote a staged policy to the one in force (audited)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from vigil.cli._output import emit, err, fail, out
from vigil.cli._state import DataDir, migrated_engine, settings_with
from vigil.errors import VigilError

if TYPE_CHECKING:
    from vigil.events.flows import Flow
    from vigil.zerotrust.segments import FlowPolicy, Segments

segments_app = typer.Typer(no_args_is_help=True, help="Micro-segmentation: flow policies.")

Flows = Annotated[list[Path], typer.Argument(help="Zeek conn logs or Sysmon network events.")]
PolicyFile = Annotated[Path, typer.Argument(help="A flow policy (YAML: segments and flows).")]


def _policy(path: Path) -> tuple[FlowPolicy, Segments]:
    from vigil.zerotrust.segments import FlowPolicy, Segments

    try:
        policy = FlowPolicy.from_yaml(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc}") from None
    except VigilError as exc:
        raise fail(str(exc)) from None
    return policy, Segments(policy.segments)


def _flows(paths: list[Path]) -> list[Flow]:
    from vigil.zerotrust.segments import read_flows

    found: list[Flow] = []
    with err.status("Reading the flows…"):
        for path in paths:
            try:
                found.extend(read_flows(path))
            except (OSError, VigilError) as exc:
                raise fail(f"{path}: {exc}") from None
    return found


@segments_app.command("learn")
def learn(
    flows: Flows,
    segments: Annotated[Path, typer.Option(help="The segments (a policy file; its flows unused).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The proposed policy.")],
    min_flows: Annotated[int, typer.Option(min=1)] = 3,
    min_sources: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Propose the least-privilege policy the flows show (a flow kept when seen at least
    --min-flows times or from --min-sources sources); stage it before promoting it."""
    from vigil.zerotrust import segments as seg

    _, known = _policy(segments)
    proposed = seg.learn(
        _flows(flows),
        known,
        min_flows=min_flows,
        min_sources=min_sources,
    )
    emit(proposed.to_yaml().encode(), output, "The proposed policy")


@segments_app.command("stage")
def stage(policy: PolicyFile, flows: Flows, json: bool = False) -> None:
    """What the policy would block among these flows, by segments and port, with examples."""
    from vigil.zerotrust import segments as seg

    rules, known = _policy(policy)
    report = seg.stage(rules, known, _flows(flows))
    if json:
        emit(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    table = Table(
        title=f"Would block {report.blocked:,} of {report.flows:,} flows", title_justify="left"
    )
    for column in ("from", "to", "protocol", "port", "flows"):
        table.add_column(column)
    for (src, dst, proto, port), count in report.counts.most_common(50):
        table.add_row(str(src), str(dst), str(proto), str(port), f"{count:,}")
    out.print(table)


@segments_app.command("check")
def check(policy: PolicyFile, flows: Flows, jsonl: bool = False) -> None:
    """The flows the policy does not allow (as lateral-movement alerts with --jsonl); exit
    code 1 when there is one."""
    from vigil.zerotrust import segments as seg

    rules, known = _policy(policy)
    found = list(seg.check(_flows(flows), rules, known))
    if jsonl:
        emit(b"".join(seg.to_alert(v).to_bytes() + b"\n" for v in found), None)
    else:
        table = Table(title=f"{len(found):,} flows outside the policy", title_justify="left")
        for column in ("time", "from", "to", "protocol", "port", "why"):
            table.add_column(column, overflow="fold")
        for violation in found[:200]:
            flow = violation.flow
            table.add_row(
                str(flow.time or ""),
                f"{flow.src} ({violation.src_segment})",
                f"{flow.dst} ({violation.dst_segment})",
                flow.protocol,
                str(flow.port or ""),
                escape(violation.reason),
            )
        out.print(table)
    if found:
        raise typer.Exit(1)


@segments_app.command("compile")
def compile_(
    policy: PolicyFile,
    staged: Annotated[bool, typer.Option(help="Count and log what it would drop.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """The policy as an nftables ruleset (checked with `nft -c` when nft is here)."""
    from vigil.zerotrust.segments import compile_nftables

    rules, known = _policy(policy)
    ruleset = compile_nftables(rules, known, staged=staged)
    nft = shutil.which("nft")
    if nft is not None:
        checked = subprocess.run(
            [nft, "-c", "-f", "-"],
            input=ruleset.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )
        if checked.returncode != 0:
            raise fail(f"nft -c refuses the ruleset: {checked.stderr.decode()[:500]}")
    emit(ruleset.encode(), output, "The ruleset")


@segments_app.command("promote")
def promote(
    staged: Annotated[Path, typer.Argument(help="The staged policy.")],
    active: Annotated[
        Path | None,
        typer.Argument(help="Where the policy in force is kept (default: [zerotrust] segments)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Put a staged policy in force (it must read; the change is in the audit chain). A
    running server's segments stage applies it from its next batch of flows."""
    import hashlib

    from vigil.respond.audit import AuditLog

    settings = settings_with(data_dir=data_dir)
    active = active or settings.zerotrust.segments
    if active is None:
        raise fail("say where the policy in force is kept, or set [zerotrust] segments")
    _policy(staged)
    body = staged.read_bytes()
    active.parent.mkdir(parents=True, exist_ok=True)
    previous = hashlib.sha256(active.read_bytes()).hexdigest() if active.exists() else None
    temporary = active.with_name(f".{active.name}.new")
    temporary.write_bytes(body)
    temporary.replace(active)
    log = AuditLog(migrated_engine(settings))
    log.append(
        "cli",
        "segments.promoted",
        str(active),
        {"from": str(staged), "sha256": hashlib.sha256(body).hexdigest(), "previous": previous},
    )
    out.print(f"{escape(str(staged))} is now in force at {escape(str(active))}")
