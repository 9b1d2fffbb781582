"""`vigil assets`: import inventories and scans, list and show what is known."""

from __future__ import annotations

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
    from vigil.assets.graph import AccessGraph
    from vigil.assets.store import AssetStore

assets_app = typer.Typer(
    no_args_is_help=True, help="The asset inventory: hosts, software, identities, cloud."
)

JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _store(data_dir: Path | None) -> AssetStore:
    from vigil.assets.store import AssetStore

    return AssetStore(migrated_engine(settings_with(data_dir=data_dir)))


def _files(paths: list[Path]) -> list[tuple[Path, str, bool]]:
    """(file, as shown, named by the user) for every file named or under a folder named."""
    found: list[tuple[Path, str, bool]] = []
    for path in paths:
        if path.is_dir():
            found.extend((p, str(p.relative_to(path)), False)
                         for p in sorted(path.rglob("*")) if p.is_file())  # fmt: skip
        elif path.is_file():
            found.append((path, path.name, True))
        else:
            raise fail(f"no such file or directory: {path}")
    return found


@assets_app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to import.")],
    format: Annotated[
        str | None,
        typer.Option(help="The format, when it cannot be told from the file (see --help)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Import scanner results, inventories and cloud identity exports (nmap XML, masscan,
    Trivy, Grype, OpenVAS, Wazuh, osquery, CSV, AWS IAM authorization details); a file no
    importer reads is named and skipped, a record that cannot be read is set aside with its
    reason."""
    from vigil.assets.importers import NotAnAssetSource, import_bytes

    store = _store(data_dir)
    table = Table(title="Imported", title_justify="left")
    for column in ("file", "format", "nodes", "new", "edges", "new edges", "set aside"):
        table.add_column(column, justify="left" if column in ("file", "format") else "right")
    failed = 0
    passed_over: list[str] = []
    for path, shown, named in _files(paths):
        try:
            # the source is named by the file as the user gave it: two scan.xml of two
            # folders are two sources (a re-import retires what its own source no longer says)
            inventory = import_bytes(path.read_bytes(), shown, format)
        except NotAnAssetSource as exc:
            if named:  # a file the user named: an error; one in a folder: passed over
                failed += 1
                err.print(f"[red]not imported[/] {escape(str(exc))}", highlight=False)
            else:
                passed_over.append(shown)
            continue
        except VigilError as exc:
            failed += 1
            err.print(f"[red]refused[/] {escape(str(exc))}", highlight=False)
            continue
        except OSError as exc:
            failed += 1
            err.print(f"[red]cannot read[/] {escape(str(path))}: {escape(str(exc))}")
            continue
        counts = store.merge(inventory)
        store.retire(inventory)  # the file again: what it no longer names goes
        report = inventory.report
        table.add_row(
            escape(shown),
            report.format,
            f"{len(inventory.nodes):,}",
            f"{counts['nodes_new']:,}",
            f"{len(inventory.edges):,}",
            f"{counts['edges_new']:,}",
            f"{report.records_rejected:,}",
        )
        for problem in report.rejects[:5]:
            err.print(f"  set aside {escape(str(problem.record))}: {escape(problem.reason)}")
    out.print(table)
    if passed_over:
        err.print(
            f"{len(passed_over):,} file(s) no importer reads were passed over: "
            + escape(", ".join(passed_over[:10]))
            + (" …" if len(passed_over) > 10 else ""),
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)


@assets_app.command("list")
def list_(
    kind: Annotated[str | None, typer.Option(help="Only this kind (host, user, ...).")] = None,
    search: Annotated[str | None, typer.Option(help="Ids or names containing this.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    json: JsonOption = False,
    data_dir: DataDir = None,
) -> None:
    """The known assets, by id."""
    store = _store(data_dir)
    nodes = store.nodes(kind=kind, search=search, limit=limit)
    if json:
        emit(orjson.dumps(nodes, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    counts = store.counts()
    table = Table(
        title=f"Assets ({', '.join(f'{n:,} {k}' for k, n in counts['nodes'].items()) or 'none'})",
        title_justify="left",
    )
    for column in ("id", "name", "sources", "attributes"):
        table.add_column(column, overflow="fold")
    for node in nodes:
        shown = ", ".join(f"{k}={v}" for k, v in list(node["attrs"].items())[:6])
        table.add_row(
            escape(node["id"]),
            escape(node["name"]),
            escape(", ".join(node["sources"])),
            escape(shown),
        )
    out.print(table)


@assets_app.command("show")
def show(
    node_id: Annotated[str, typer.Argument(help="The asset's id (kind:key), as listed.")],
    json: JsonOption = False,
    data_dir: DataDir = None,
) -> None:
    """One asset: its attributes, its sources and its relationships."""
    found = _store(data_dir).node(node_id)
    if found is None:
        raise fail(f"no asset {node_id!r} (see `vigil assets list --search`)")
    if json:
        emit(orjson.dumps(found, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    out.print(f"[bold]{escape(found['id'])}[/] {escape(found['name'])}", highlight=False)
    for key, value in found["attrs"].items():
        out.print(f"  {escape(key)}: {escape(str(value))}", highlight=False)
    out.print(f"  sources: {escape(', '.join(found['sources']))}", highlight=False)
    table = Table(title="Relationships", title_justify="left")
    for column in ("direction", "kind", "other end", "attributes"):
        table.add_column(column, overflow="fold")
    for edge in found["edges_out"]:
        attrs = ", ".join(f"{k}={v}" for k, v in edge["attrs"].items())
        table.add_row("→", edge["kind"], escape(edge["dst"]), escape(attrs))
    for edge in found["edges_in"]:
        attrs = ", ".join(f"{k}={v}" for k, v in edge["attrs"].items())
        table.add_row("←", edge["kind"], escape(edge["src"]), escape(attrs))
    out.print(table)


def _graph(data_dir: Path | None) -> tuple[AssetStore, AccessGraph]:
    from vigil.assets.graph import AccessGraph

    store = _store(data_dir)
    with err.status("Loading the access graph…"):
        return store, AccessGraph.from_store(store.engine)


@assets_app.command("paths")
def paths(
    sources: Annotated[
        list[str],
        typer.Option("--from", help="Start here (default: every internet-exposed asset)."),
    ] = [],  # noqa: B006
    targets: Annotated[
        list[str], typer.Option("--to", help="End here (default: every crown jewel).")
    ] = [],  # noqa: B006
    per_target: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    json: JsonOption = False,
    data_dir: DataDir = None,
) -> None:
    """Attack paths: the shortest ways from the exposed (or compromised) assets to the crown
    jewels, and the choke points most of them go through."""
    from vigil.assets.graph import AccessGraph, summary

    store, graph = _graph(data_dir)
    starts = sources or store.ids_where("internet_exposed")
    ends = targets or store.ids_where("crown_jewel")
    if not starts or not ends:
        raise fail(
            "no " + ("starting points" if not starts else "crown jewels")
            + ": mark them in the inventory (a CSV with exposure / criticality columns) "
            "or name them with --from / --to"
        )  # fmt: skip
    found = graph.attack_paths(starts, ends, per_target=per_target)
    chokes = AccessGraph.choke_points(found)
    if json:
        body = {"paths": [summary(p) for p in found], "choke_points": chokes}
        emit(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    table = Table(title=f"Attack paths ({len(found):,})", title_justify="left")
    table.add_column("hops", justify="right")
    table.add_column("path", overflow="fold")
    for path in found:
        steps = [escape(path.nodes[0])]
        for kinds, node in zip(path.kinds, path.nodes[1:], strict=True):
            steps.append(f"[dim]─{'/'.join(kinds)}→[/] {escape(node)}")
        table.add_row(str(len(path)), " ".join(steps))
    out.print(table)
    if chokes:
        out.print(
            "Choke points: "
            + ", ".join(f"{escape(node)} ({count} paths)" for node, count in chokes),
            highlight=False,
        )


@assets_app.command("blast-radius")
def blast_radius(
    node_id: Annotated[str, typer.Argument(help="The compromised asset (kind:key).")],
    depth: Annotated[int | None, typer.Option(min=1, help="At most this many moves.")] = None,
    json: JsonOption = False,
    data_dir: DataDir = None,
) -> None:
    """What an attacker holding this asset can reach, and in how many moves."""
    _, graph = _graph(data_dir)
    if node_id not in graph.index:
        raise fail(f"no relationship of {node_id!r} is known (see `vigil assets show`)")
    reach = graph.blast_radius(node_id, depth=depth)
    if json:
        emit(orjson.dumps(reach, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    kinds: dict[str, int] = {}
    for reached in reach:
        kind = reached.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    out.print(
        f"{escape(node_id)} reaches {len(reach):,} assets: "
        + (", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items())) or "none"),
        highlight=False,
    )
    table = Table(title_justify="left")
    table.add_column("moves", justify="right")
    table.add_column("asset", overflow="fold")
    for reached, moves in sorted(reach.items(), key=lambda item: (item[1], item[0]))[:200]:
        table.add_row(str(moves), escape(reached))
    out.print(table)


@assets_app.command("privesc")
def privesc(
    principal: Annotated[
        str | None, typer.Option(help="Only this user or role (its ARN, or a part of it).")
    ] = None,
    json: JsonOption = False,
    data_dir: DataDir = None,
) -> None:
    """Cloud privilege escalation: which imported IAM users and roles can make themselves
    administrators, by which published method, through which policy statements."""
    from vigil.assets.privesc import find_escalations

    store = _store(data_dir)
    with err.status("Evaluating the IAM principals' permissions…"):
        found = find_escalations(store.inventory(("user", "group", "role", "policy")))
    findings = [f for f in found.findings if principal is None or principal in f.principal]
    if json:
        body = {
            "findings": [f.as_dict() for f in findings],
            "admins": [a.principal for a in found.admins],
        }
        emit(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n", None)
        return
    table = Table(title=f"Privilege escalation ({len(findings):,} paths)", title_justify="left")
    for column in ("principal", "method", "target", "steps (policy: statement)"):
        table.add_column(column, overflow="fold")
    for finding in findings[:500]:
        steps = "; ".join(
            f"{step.action} via {step.statement.policy}"
            + (f" [{step.statement.sid}]" if step.statement.sid else "")
            for step in finding.steps
        )
        table.add_row(
            escape(finding.principal.rsplit("/", 1)[-1]),
            escape(finding.method),
            escape(finding.target.rsplit("/", 1)[-1]),
            escape(steps),
        )
    out.print(table)
    if found.admins:
        out.print(
            f"Already administrators: {len(found.admins)} ("
            + escape(", ".join(a.principal.rsplit("/", 1)[-1] for a in found.admins[:10]))
            + ")",
            highlight=False,
        )
