"""Scopes as the Microsoft identity platform reads them, for the one resource the emulator serves: Graph.

A Graph permission may be written resource-qualified (`https://graph.microsoft.com/Contacts.ReadWrite`)
or short (`Contacts.ReadWrite`, Graph being the default resource); both name the same permission.
Microsoft echoes each scope in the form it was requested, with the permission's canonical casing
(MSAL caches access tokens under the echoed scopes, so this decides whether its cache hits), leaves out
`offline_access`, and adds `email` whenever `openid` was asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

from m365_emulator.identity.errors import IdentityError

GRAPH_RESOURCE = "https://graph.microsoft.com/"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
DEFAULT = ".default"

# Delegated Graph permissions the emulator knows, with the wording Microsoft's consent page uses.
GRAPH_PERMISSIONS: dict[str, str] = {
    "User.Read": "Sign you in and read your profile",
    "User.ReadBasic.All": "Read all users' basic profiles",
    "Contacts.Read": "Read your contacts",
    "Contacts.ReadWrite": "Have full access to your contacts",
    "Contacts.Read.Shared": "Read your and shared contacts",
    "Contacts.ReadWrite.Shared": "Read and write to your and shared contacts",
    "Tasks.Read": "Read your tasks and task lists",
    "Tasks.ReadWrite": "Create, read, update, and delete your tasks and task lists",
    "Tasks.Read.Shared": "Read your and shared tasks",
    "Tasks.ReadWrite.Shared": "Read and write your and shared tasks",
    "Calendars.Read": "Read your calendars",
    "Calendars.ReadWrite": "Have full access to your calendars",
    "Calendars.Read.Shared": "Read your and shared calendars",
    "Calendars.ReadWrite.Shared": "Read and write your and shared calendars",
    "Mail.Read": "Read your mail",
    "Mail.ReadWrite": "Read and write access to your mail",
    "Mail.Send": "Send mail as you",
    "MailboxSettings.Read": "Read your mailbox settings",
    "MailboxSettings.ReadWrite": "Read and write to your mailbox settings",
}
OIDC_SCOPES: dict[str, str] = {
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "offline_access": "Maintain access to data you have given it access to",
}
_CANONICAL = {name.lower(): name for name in GRAPH_PERMISSIONS}
_RESOURCE_PREFIXES = (GRAPH_RESOURCE, GRAPH_APP_ID + "/")


@dataclass(frozen=True)
class GraphScope:
    name: str  # canonical permission name, or ".default"
    qualified: bool  # requested as https://graph.microsoft.com/<name>

    def written(self, name: str | None = None) -> str:
        return (GRAPH_RESOURCE if self.qualified else "") + (name or self.name)


@dataclass(frozen=True)
class ScopeRequest:
    """A parsed `scope` parameter."""

    oidc: frozenset[str]
    graph: tuple[GraphScope, ...]

    @property
    def is_default(self) -> bool:
        return any(s.name == DEFAULT for s in self.graph)

    def graph_names(self, consented: set[str]) -> list[str]:
        """The Graph permissions asked for; `.default` stands for what the user already granted the app
        (User.Read when nothing was granted yet: every app registration starts with it)."""
        if self.is_default:
            granted = sorted(n for n in consented if n in GRAPH_PERMISSIONS)
            return granted or ["User.Read"]
        return [s.name for s in self.graph]

    def consent_items(self, consented: set[str]) -> list[str]:
        """Everything the consent page must cover: Graph permissions first, then the OpenID scopes."""
        return self.graph_names(consented) + [s for s in OIDC_SCOPES if s in self.oidc]

    def response_scope(self, consented: set[str]) -> str:
        """The `scope` of a token response, written as Microsoft writes it."""
        if self.is_default:
            default = next(s for s in self.graph if s.name == DEFAULT)
            parts = [default.written(n) for n in self.graph_names(consented)]
        else:
            parts = [s.written() for s in self.graph]
        if "profile" in self.oidc:
            parts.append("profile")
        if "openid" in self.oidc:
            parts.append("openid")
        if "openid" in self.oidc or "email" in self.oidc:
            parts.append("email")
        return " ".join(parts)


def parse_scopes(raw: str | None, client_id: str) -> ScopeRequest:
    words = (raw or "").split()
    if not words:
        raise IdentityError("invalid_request", 900144, parameter="scope")
    oidc: set[str] = set()
    graph: list[GraphScope] = []
    for word in words:
        if word.lower() in OIDC_SCOPES:
            oidc.add(word.lower())
            continue
        qualified = False
        name = word
        for prefix in _RESOURCE_PREFIXES:
            if word.lower().startswith(prefix):
                qualified, name = True, word[len(prefix):]
                break
        if "://" in name or "/" in name:  # another resource: the emulator knows only Graph
            raise IdentityError("invalid_scope", 70011, scope=word)
        if name == DEFAULT:
            graph.append(GraphScope(DEFAULT, qualified))
            continue
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            raise IdentityError("invalid_client", 650053, client_id=client_id, scope=name)
        if all(s.name != canonical for s in graph):
            graph.append(GraphScope(canonical, qualified))
    if any(s.name == DEFAULT for s in graph) and len(graph) > 1:
        # Microsoft refuses `.default` mixed with named permissions of the same resource.
        raise IdentityError("invalid_scope", 70011, scope=" ".join(words))
    return ScopeRequest(frozenset(oidc), tuple(graph))


def describe(item: str) -> str:
    """The consent page's wording for one permission or OpenID scope."""
    return GRAPH_PERMISSIONS.get(item) or OIDC_SCOPES.get(item, item)
