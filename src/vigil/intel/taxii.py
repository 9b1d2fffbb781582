"""TAXII 2.1 pulls: the collections of an API root, page by page, from where the last pull
stopped, into STIX indicators."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import ApiRoot, Collection, Server

from vigil.errors import InputError, VigilError
from vigil.intel import stix
from vigil.intel.model import ImportResult

MEDIA_TYPE = "application/taxii+json;version=2.1"
# connect 10 s; each read (and write) 120 s: a stalled server must not stall a scheduled pull
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
MAX_REDIRECTS = 30  # followed, as requests (what pulls were made with before) does
LAST_ADDED = "X-TAXII-Date-Added-Last"
HTTP_HINTS = {
    401: "the server refused the user name or password",
    403: "the account may not read this",
    404: "no such API root, collection or page",
    406: "the server does not speak TAXII 2.1",
}


class TaxiiError(VigilError):
    """A TAXII server that cannot be pulled: the URL (without credentials) and why."""


def pull(
    url: str,
    *,
    collection: str | None = None,
    user: str | None = None,
    password: str | None = None,
    added_after: str | None = None,
    page_size: int = 100,
    verify: bool = True,
) -> ImportResult:
    """The indicators of every readable collection under `url` (an API root, or a discovery
    URL whose API roots are all pulled), or of the one `collection` named by id or title.

    Only objects added after `added_after` are fetched: a timestamp for every collection, or
    the `cursor` of a previous pull (JSON text, collection id -> timestamp). The result's
    `cursor` holds the newest date each collection reported, so that passing it back gives
    only what is new. `stats` counts `collections`, `objects` and `pages`, also per
    collection title (`objects:<title>`, `pages:<title>`).

        >>> first = pull("https://taxii.example/api1/", user="me", password=key)  # doctest: +SKIP
        >>> later = pull("https://taxii.example/api1/", user="me", password=key,
        ...              added_after=first.cursor)  # doctest: +SKIP

    Raises TaxiiError when the server cannot be reached or read, InputError for options that
    cannot be used."""
    if page_size < 1:
        raise InputError(f"TAXII page size must be at least 1, not {page_size}")
    since = _Since.parse(added_after)
    connection = _Connection(user, password, verify)
    try:
        chosen = _collections(url, connection, collection)
        result = ImportResult(source=_overall_source(url, chosen))
        cursor = dict(since.per_collection)
        result.stats.update(collections=len(chosen), objects=0, pages=0)
        for source, found in chosen:
            after = since.of(found.id)
            objects, pages, newest = _fetch(found, connection, after, page_size)
            if objects and newest is None:
                newest = _newest_in_manifest(found, connection, after, page_size)
            mark = newest or after
            if mark:
                cursor[found.id] = mark
            result.extend(stix.from_objects(objects, source))
            result.stats["objects"] += len(objects)
            result.stats["pages"] += pages
            result.stats[f"objects:{found.title}"] = len(objects)
            result.stats[f"pages:{found.title}"] = pages
        result.cursor = json.dumps(cursor, sort_keys=True) if cursor else None
        return result
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class _Since:
    """Where a pull starts: one date for every collection, and dates per collection id."""

    default: str | None = None
    per_collection: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> _Since:
        if text is None or not text.strip():
            return cls()
        text = text.strip()
        if not text.startswith("{"):
            return cls(default=_timestamp(text, "added_after"))
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise InputError("added_after: neither a timestamp nor a JSON object of dates")
        dates = {
            str(key): _timestamp(value, f"added_after[{key!r}]") for key, value in decoded.items()
        }
        return cls(per_collection=dates)

    def of(self, collection_id: str) -> str | None:
        return self.per_collection.get(collection_id, self.default)


def _timestamp(value: Any, what: str) -> str:
    try:
        if isinstance(value, str) and stix.epoch(value) is not None:
            return value.strip()
    except ValueError:
        pass
    raise InputError(f"{what}: {value!r} is not a timestamp (2024-01-31T00:00:00Z)")


def _collections(
    url: str, connection: _Connection, wanted: str | None
) -> list[tuple[str, Collection]]:
    """(indicator source name, collection) for each collection to pull."""
    found: list[tuple[str, Collection]] = []
    for root in _api_roots(url, connection):
        with _reading(root.url, connection):
            root_name = root.title or _safe_url(root.url)
            collections = list(root.collections)
        for item in collections:
            if wanted is not None and wanted not in (item.id, item.title, item.alias):
                continue
            if not item.can_read:
                if wanted is not None:
                    raise TaxiiError(
                        f"{_safe_url(item.url)}: collection {wanted!r} is not readable"
                    )
                continue
            found.append((f"taxii:{root_name}/{item.title}", item))
    if wanted is not None and not found:
        raise TaxiiError(f"{_safe_url(url)}: no collection with the id or title {wanted!r}")
    return found


def _api_roots(url: str, connection: _Connection) -> list[ApiRoot]:
    """The API root at `url`, or the API roots a discovery resource at `url` lists."""
    with _reading(url, connection):
        answer = Server(url, conn=connection)
        answer.refresh()
        if answer.api_roots:
            return [ApiRoot(root.url, conn=connection) for root in answer.api_roots]
        if "versions" in answer.custom_properties:  # an API root's information
            return [ApiRoot(url, conn=connection)]
    raise TaxiiError(f"{_safe_url(url)}: a TAXII discovery resource that lists no API roots")


def _overall_source(url: str, chosen: list[tuple[str, Collection]]) -> str:
    if len(chosen) == 1:
        return chosen[0][0]
    roots = {source.rpartition("/")[0] for source, _ in chosen}
    return roots.pop() if len(roots) == 1 else f"taxii:{_safe_url(url)}"


def _fetch(
    found: Collection, connection: _Connection, after: str | None, page_size: int
) -> tuple[list[Any], int, str | None]:
    """Every object of a collection added after `after`: (objects, pages, newest date)."""
    objects: list[Any] = []
    pages = 0
    newest: str | None = None
    for envelope, last_added in _pages(found.get_objects, found, connection, after, page_size):
        pages += 1
        objects.extend(_items(envelope, "objects", found))
        newest = _later(newest, last_added)
    return objects, pages, newest


def _newest_in_manifest(
    found: Collection, connection: _Connection, after: str | None, page_size: int
) -> str | None:
    """The newest `date_added` of the manifest, for servers that send no date headers."""
    newest: str | None = None
    for envelope, _ in _pages(found.get_manifest, found, connection, after, page_size):
        for entry in _items(envelope, "objects", found):
            if isinstance(entry, Mapping) and isinstance(entry.get("date_added"), str):
                newest = _later(newest, entry["date_added"])
    return newest


def _pages(
    endpoint: Callable[..., Any],
    found: Collection,
    connection: _Connection,
    after: str | None,
    page_size: int,
) -> Iterator[tuple[Mapping[str, Any], str | None]]:
    """Each envelope of a paged endpoint, with its `X-TAXII-Date-Added-Last`. Follows `next`;
    a server that says `more` without `next` is asked again from its last date, as TAXII 2.1
    allows."""
    start = after
    token: str | None = None
    while True:
        with _reading(found.url, connection):
            envelope = endpoint(limit=page_size, added_after=start, next=token)
        if not isinstance(envelope, Mapping):
            raise TaxiiError(f"{_safe_url(found.url)}: the server sent no TAXII envelope")
        last_added = connection.last_headers.get(LAST_ADDED)
        yield envelope, last_added
        if envelope.get("more") is not True:
            return
        if not envelope.get("objects"):
            raise TaxiiError(f"{_safe_url(found.url)}: the server says `more` but sent nothing")
        next_token = envelope.get("next")
        if isinstance(next_token, str) and next_token:
            token = next_token
        elif last_added and last_added != start:
            start, token = last_added, None
        else:
            raise TaxiiError(f"{_safe_url(found.url)}: the server says `more` but not where")


def _items(envelope: Mapping[str, Any], key: str, found: Collection) -> list[Any]:
    items = envelope.get(key, [])
    if not isinstance(items, list):
        raise TaxiiError(f"{_safe_url(found.url)}: `{key}` of the envelope is not a list")
    return items


def _later(held: str | None, candidate: str | None) -> str | None:
    """The later of two TAXII timestamps (compared as times: precisions differ)."""
    if not candidate:
        return held
    try:
        moment = stix.epoch(candidate)
    except ValueError:
        return held
    if held is None or (moment is not None and moment > (stix.epoch(held) or 0.0)):
        return candidate
    return held


class _Connection:
    """What taxii2client endpoints call to GET a resource (its `conn` argument, so that
    taxii2client makes no request of its own): an httpx client with a timeout, that keeps
    the headers of the last answer (the TAXII date headers) and turns every failure into a
    TaxiiError without credentials. Basic auth from `user` and `password`, else from the
    URL's user info."""

    def __init__(self, user: str | None, password: str | None, verify: bool) -> None:
        login = (user or "", password or "") if user is not None or password is not None else None
        self.client = httpx.Client(
            auth=login,
            verify=verify,
            timeout=TIMEOUT,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": "vigil"},
        )
        self.secrets = tuple(s for s in (password,) if s)
        self.last_headers: Mapping[str, str] = {}

    def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        asked = {"Accept": MEDIA_TYPE, **(headers or {})}
        try:
            response = self.client.get(url, headers=asked, params=params)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TaxiiError(f"{_safe_url(url)}: {_network_reason(exc)}") from None
        self.last_headers = response.headers
        if response.status_code >= 400:
            raise TaxiiError(f"{_safe_url(url)}: {_http_reason(response)}")
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise TaxiiError(f"{_safe_url(url)}: the answer is not JSON ({kind})") from None

    def hide(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def close(self) -> None:
        self.client.close()


@contextmanager
def _reading(url: str, connection: _Connection) -> Iterator[None]:
    """Errors of taxii2client (a resource without its required fields, not an object)
    as TaxiiError."""
    try:
        yield
    except TaxiiError as exc:
        raise TaxiiError(connection.hide(str(exc))) from None
    except (TAXIIServiceException, TypeError, AttributeError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = f"{_safe_url(url)}: not a valid TAXII 2.1 answer: {reason}"
        raise TaxiiError(connection.hide(message)) from None


def _http_reason(response: httpx.Response) -> str:
    reason = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    hint = HTTP_HINTS.get(response.status_code)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("description"), str):
        detail = body["description"][:300]
    else:
        detail = hint
    return f"{reason} ({detail})" if detail else reason


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _network_reason(exc: httpx.HTTPError | httpx.InvalidURL) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if _caused_by(exc, ssl.SSLError):
        return "TLS failed (certificate not trusted? `verify=False` skips the check)"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return "not a valid URL"
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        found = _ERRNO.search(str(exc))
        return f"cannot connect ({found.group(0).strip() if found else 'connection failed'})"
    return f"request failed ({type(exc).__name__})"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` or one of the errors it was raised from is a `kind` (httpx keeps the
    socket's or TLS layer's error as the cause)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _safe_url(url: str) -> str:
    """`url` without user name, password, query or fragment, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"
