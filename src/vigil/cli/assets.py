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
            inventory = import_bytes(path.read_bytes(), path.name, format)
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
