"""The directory connector (LDAP, `ldap3`): disable an account and enable it again (its
undo). A disabled account can no longer bind.

    directory = Directory("ldap://dc1:389", "cn=admin,dc=corp", secret, base="dc=corp")
    directory.disable("alice")          # by uid (or sAMAccountName), or a whole DN
    directory.enable("alice")

Two kinds of directory, one switch (`kind`):
- `openldap`: the password-policy overlay's `pwdAccountLockedTime` set to 000001010000Z (locked
  until an administrator unlocks it), removed to enable;
- `ad`: bit 2 (ACCOUNTDISABLE) of `userAccountControl` set, cleared to enable.

Both are idempotent: disabling a disabled account changes nothing. A user name is looked up
with its filter characters escaped; the password is never logged. In dry-run the change is
only described.
"""

from __future__ import annotations

from typing import Any, Literal

from ldap3 import BASE, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from vigil.errors import InputError, NotFound, Unavailable
from vigil.respond.result import ActionResult

LOCKED = "000001010000Z"  # pwdAccountLockedTime: locked for good (until removed)
ACCOUNTDISABLE = 0x2
TIMEOUT_S = 10
NAME_ATTRIBUTE = {"openldap": "uid", "ad": "sAMAccountName"}
STATE_ATTRIBUTE = {"openldap": "pwdAccountLockedTime", "ad": "userAccountControl"}


class DirectoryError(Unavailable):
    """The directory could not be reached or refused the change."""


class Directory:
    def __init__(
        self,
        url: str,
        bind_dn: str,
        password: str,
        *,
        base: str,
        kind: Literal["openldap", "ad"] = "openldap",
        dry_run: bool = False,
    ) -> None:
        self.server = Server(url, connect_timeout=TIMEOUT_S)
        self.bind_dn = bind_dn
        self._password = password
        self.base = base
        self.kind = kind
        self.dry_run = dry_run

    def __repr__(self) -> str:  # never the password
        return f"Directory({self.server.host!r}, {self.bind_dn!r}, kind={self.kind!r})"

    # --- actions and their undo --------------------------------------------------------------

    def disable(self, user: str) -> ActionResult:
        return self._set(user, disabled=True)

    def enable(self, user: str) -> ActionResult:
        return self._set(user, disabled=False)

    def state(self, user: str) -> dict[str, Any]:
        with self._connection() as conn:
            dn, attrs = self._find(conn, user)
            return {"dn": dn, "disabled": self._disabled(attrs)}

    # --- the changes -------------------------------------------------------------------------

    def _set(self, user: str, *, disabled: bool) -> ActionResult:
        with self._connection() as conn:
            dn, attrs = self._find(conn, user)
            if self._disabled(attrs) == disabled:
                state = {"dn": dn, "disabled": disabled}
                return ActionResult(True, self.dry_run, [], "already so", state)
            change = self._change(attrs, disabled=disabled)
            command = {"modify": dn, "changes": {k: [op, list(v)] for k, (op, v) in change.items()}}
            if self.dry_run:
                return ActionResult(True, True, [command], "dry run: nothing changed")
            changes = {k: [(op, list(v))] for k, (op, v) in change.items()}
            if not conn.modify(dn, changes):  # type: ignore[no-untyped-call]
                raise DirectoryError(f"the directory refused to change {dn}: {conn.result}")
            _, after = self._find(conn, dn)
            state = {"dn": dn, "disabled": self._disabled(after)}
            return ActionResult(True, False, [command], str(conn.result.get("description")), state)

    def _change(self, attrs: dict[str, Any], *, disabled: bool) -> dict[str, tuple[str, Any]]:
        if self.kind == "ad":
            control = int(_first(attrs.get("userAccountControl")) or 512)
            value = control | ACCOUNTDISABLE if disabled else control & ~ACCOUNTDISABLE
            return {"userAccountControl": (MODIFY_REPLACE, [str(value)])}
        if disabled:
            return {"pwdAccountLockedTime": (MODIFY_REPLACE, [LOCKED])}
        return {"pwdAccountLockedTime": (MODIFY_DELETE, [])}

    def _disabled(self, attrs: dict[str, Any]) -> bool:
        if self.kind == "ad":
            return bool(int(_first(attrs.get("userAccountControl")) or 0) & ACCOUNTDISABLE)
        return bool(attrs.get("pwdAccountLockedTime"))

    def _find(self, conn: Connection, user: str) -> tuple[str, dict[str, Any]]:
        """The account's DN and the attributes that say whether it is disabled."""
        wanted = [STATE_ATTRIBUTE[self.kind]]  # a name the server's schema knows
        try:
            if _is_dn(user):
                found = conn.search(user, "(objectClass=*)", BASE, attributes=wanted)
            else:
                if not user.strip() or len(user) > 256:
                    raise InputError(f"not an account name: {user!r}")
                name = NAME_ATTRIBUTE[self.kind]
                query = f"({name}={escape_filter_chars(user)})"
                found = conn.search(self.base, query, SUBTREE, attributes=wanted, size_limit=2)
        except LDAPException as exc:
            raise DirectoryError(f"the directory refused the search: {exc}") from None
        entries = conn.entries if found else []
        if len(entries) != 1:
            raise NotFound(f"no single account {user!r} in {self.base}")
        entry = entries[0]
        return entry.entry_dn, {k: entry[k].values for k in entry.entry_attributes}

    def _connection(self) -> Connection:
        try:
            conn = Connection(self.server, self.bind_dn, self._password, auto_bind=True,
                              receive_timeout=TIMEOUT_S, raise_exceptions=False)  # fmt: skip
        except LDAPException as exc:
            raise DirectoryError(f"cannot bind to {self.server.host} as {self.bind_dn}: "
                                 f"{type(exc).__name__}") from None  # fmt: skip
        return conn


def _is_dn(text: str) -> bool:
    try:
        return "=" in text and bool(parse_dn(text))
    except LDAPException:  # not a DN: a name (looked up with its characters escaped)
        return False


def _first(values: Any) -> Any:
    if isinstance(values, list | tuple):
        return values[0] if values else None
    return values


__all__ = ["Directory", "DirectoryError"]
