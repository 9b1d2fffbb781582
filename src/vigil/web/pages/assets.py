"""Assets: the inventory (by kind, managed or not, searched, paged), the attack paths from the
internet-exposed assets to the crown jewels drawn as a graph, and an asset's page: what the
sources say of it, its edges in and out, its blast radius (drawn and listed) and its paths to
the jewels. Drawings are bounded: past `NODES_DRAWN` nodes the nearest are drawn and the page
says how many were left out."""

# No `from __future__ import annotations`: FastAPI reads the routes' signatures.
from collections.abc import Iterable, Sequence
from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from vigil.api.context import BIGINT
from vigil.assets.model import NODE_KINDS
from vigil.errors import NotFound
from vigil.web.console import PREFIX, Console
from vigil.web.sessions import Session

PAGE = 50  # inventory rows per page
PER_TARGET = 5  # paths to each jewel, at most (as the API's default)
PATHS_DRAWN = 40  # attack paths drawn, at most
NODES_DRAWN = 150  # nodes in one drawing, at most
EDGES_DRAWN = 400  # edges in one drawing, at most
EDGES_LISTED = 200  # edges in and out listed on an asset's page, each way
REACH_LISTED = 300  # nodes of a blast radius listed
COLOUR_OF = {"address": "ip", "cloud_resource": "cloud", "data_store": "data"}  # console.js


def href(node_id: str) -> str:
    """An asset's page (every character of the id quoted but the kind's colon: an id with
    slashes or dots stays one path segment)."""
    return f"{PREFIX}/assets/{quote(node_id, safe=':')}"


def label(node_id: str) -> str:
    """A node's id without its kind; of an ARN, its last part."""
    key = node_id.partition(":")[2]
    if key.startswith("arn:"):
        key = key.rsplit(":", 1)[-1]
    return key or node_id


def kind_of(node_id: str) -> str:
    kind = node_id.partition(":")[0]
    return COLOUR_OF.get(kind, kind)


def text(value: Any) -> str:
    """An attribute's value as plain text (lists joined, mappings as JSON)."""
    if isinstance(value, list | tuple):
        return ", ".join(text(item) for item in value)
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def drawing(
    nodes: Iterable[str],
    moves: Iterable[tuple[str, str, Sequence[str]]],
    *,
    jewels: Iterable[str] = (),
    starts: Iterable[str] = (),
    focus: str | None = None,
    path_moves: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The graph convention of the console (`.graph` and its JSON block): nodes with their
    kind, label, page and classes (jewel, start, focus), edges with their kinds and the
    attack paths' marked `path`."""
    jewel, start, marked = set(jewels), set(starts), set(path_moves)
    drawn = []
    for node in dict.fromkeys(nodes):
        holds = {"jewel": node in jewel, "start": node in start, "focus": node == focus}
        drawn.append(
            {
                "id": node,
                "label": label(node),
                "kind": kind_of(node),
                "href": href(node),
                "classes": [name for name, held in holds.items() if held],
            }
        )
    edges = [
        {
            "source": src,
            "target": dst,
            "label": "/".join(kinds),
            "classes": ["path"] if (src, dst) in marked else [],
        }
        for src, dst, kinds in moves
    ]
    return {"nodes": drawn, "edges": edges, "layout": "cose"}


def paths_drawing(found: dict[str, Any]) -> dict[str, Any]:
    """The first `PATHS_DRAWN` attack paths as one graph, capped at `NODES_DRAWN` nodes (a
    path that would pass it is left out whole)."""
    nodes: dict[str, None] = {}
    moves: dict[tuple[str, str], Sequence[str]] = {}
    drawn = 0
    for path in found["paths"][:PATHS_DRAWN]:
        fresh = [n for n in path["nodes"] if n not in nodes]
        if len(nodes) + len(fresh) > NODES_DRAWN:
            break
        nodes.update(dict.fromkeys(fresh))
        for src, dst, kinds in zip(path["nodes"], path["nodes"][1:], path["kinds"], strict=False):
            moves[(src, dst)] = kinds
        drawn += 1
    graph = drawing(
        nodes,
        [(src, dst, kinds) for (src, dst), kinds in moves.items()],
        jewels=found["to"],
        starts=[p["nodes"][0] for p in found["paths"][:drawn]],
        path_moves=moves,
    )
    return {**graph, "drawn": drawn}


def router(console: Console) -> APIRouter:
    routes = console.routes()
    reader = console.reader("assets:read")

    @routes.get(f"{PREFIX}/assets")
    def inventory(
        request: Request,
        session: Annotated[Session, Depends(reader)],
        kind: Annotated[str, Query(max_length=32)] = "",
        search: Annotated[str, Query(max_length=200)] = "",
        managed: Annotated[str, Query(pattern="^(|yes|no)$")] = "",
        offset: Annotated[int, Query(ge=0, le=BIGINT)] = 0,
    ) -> HTMLResponse:
        backend = console.backend
        rows = backend.asset_store.nodes(
            kind=kind or None,
            search=search or None,
            managed={"yes": True, "no": False}.get(managed),
            limit=PAGE,
            offset=offset,
        )
        found = backend.attack_paths(per_target=PER_TARGET)
        return console.render(
            request,
            session,
            "assets.html",
            rows=rows,
            kinds=sorted(NODE_KINDS),
            kind=kind,
            search=search,
            managed=managed,
            offset=offset,
            limit=PAGE,
            found=found,
            graph=paths_drawing(found),
            href=href,
            label=label,
            limits={"paths": PATHS_DRAWN, "nodes": NODES_DRAWN},
        )

    # last: an id may hold slashes (ARNs)
    @routes.get(f"{PREFIX}/assets/{{node_id:path}}")
    def asset(
        request: Request, node_id: str, session: Annotated[Session, Depends(reader)]
    ) -> HTMLResponse:
        backend = console.backend
        found = backend.asset_store.node(node_id, most=EDGES_LISTED)
        if found is None:
            raise NotFound(f"no asset {node_id!r}")
        try:
            reach: dict[str, int] = backend.blast_radius(node_id)["moves"]
        except NotFound:  # no relationship of it is known: it reaches nothing
            reach = {}
        paths = backend.attack_paths([node_id], per_target=PER_TARGET)
        nearest = sorted(reach.items(), key=lambda item: (item[1], item[0]))
        # drawn: the asset, its paths to the jewels, then the nearest of what it reaches
        on_paths = [n for p in paths["paths"][:PATHS_DRAWN] for n in p["nodes"]]
        nodes = list(dict.fromkeys([node_id, *on_paths, *(n for n, _ in nearest)]))
        nodes = nodes[:NODES_DRAWN]
        path_moves = {
            (src, dst)
            for p in paths["paths"][:PATHS_DRAWN]
            for src, dst in zip(p["nodes"], p["nodes"][1:], strict=False)
        }
        graph = drawing(
            nodes,
            backend.access_graph().moves_among(nodes, most=EDGES_DRAWN),
            jewels=paths["to"],
            focus=node_id,
            path_moves=path_moves,
        )
        return console.render(
            request,
            session,
            "asset.html",
            asset=found,
            attrs=[(key, text(value)) for key, value in sorted(found["attrs"].items())],
            text=text,
            reach=nearest[:REACH_LISTED],
            reaches=len(reach),
            paths=paths,
            graph=graph,
            drawn=len(nodes),
            href=href,
            label=label,
            limits={"edges": EDGES_LISTED, "nodes": NODES_DRAWN, "edges_drawn": EDGES_DRAWN},
        )

    return routes
