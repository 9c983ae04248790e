"""`--state-file`: users, app registrations, access and refresh tokens, consents, mailboxes and the delta-token
key survive a restart, so stored deltaLinks, tokens and sign-ins keep working against a restarted emulator.
(Authorization codes live ten minutes and are not kept.)

The file is written atomically (temporary file, then rename) whenever the state changed: checked cheaply every
maintenance tick (counters), fully every few seconds (modules' own persisted parts change behind our back), and
once more at shutdown.
"""
from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from m365_emulator.kernel.core import AccessToken, App, RefreshToken, User
from m365_emulator.kernel.emulator import Emulator

FORMAT_VERSION = 1
FULL_CHECK_SECONDS = 5.0


class Persister:
    def __init__(self, path: Path, emu: Emulator) -> None:
        self.path = path
        self.emu = emu
        self._last_text: str | None = None
        self._last_fingerprint: tuple[Any, ...] | None = None
        self._last_full_check = 0.0

    def snapshot(self) -> dict[str, Any]:
        core = self.emu.core
        with core.lock:
            users = [vars(u).copy() for u in core.users.values()]
            apps = [{**vars(a), "redirect_uris": list(a.redirect_uris)} for a in core.apps.values()]
            tokens = [{**vars(t), "scopes": list(t.scopes)} for t in core.access_tokens.values()]
            refresh = [vars(t).copy() for t in core.refresh_tokens.values()]
            consents = [{"user_id": u, "client_id": c, "scopes": sorted(s)} for (u, c), s in core.consents.items()]
            tenant, offset = core.tenant_id, core.clock.offset
        return {
            "version": FORMAT_VERSION, "tenant_id": tenant, "clock_offset": offset, "users": users, "apps": apps,
            "access_tokens": tokens, "refresh_tokens": refresh, "consents": consents,
            "token_secret": base64.b64encode(self.emu.token_secret).decode(),
            "mailboxes": self.emu.store.dump(),
            "extensions": {name: part.dump() for name, part in self.emu.persisted.items()},
        }

    def load(self) -> bool:
        """Restore from the file if it exists; returns whether it did."""
        if not self.path.exists():
            return False
        data = json.loads(self.path.read_text())
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: unsupported state format {data.get('version')!r}")
        core = self.emu.core
        with core.lock:
            core.tenant_id = data["tenant_id"]
            core.clock.offset = float(data.get("clock_offset", 0.0))
            core.users = {u["id"]: User(**u) for u in data["users"]}
            core.apps = {a["client_id"]: App(**{**a, "redirect_uris": tuple(a["redirect_uris"])}) for a in data["apps"]}
            core.access_tokens = {t["token"]: AccessToken(**{**t, "scopes": tuple(t["scopes"])})
                                  for t in data["access_tokens"]}
            core.refresh_tokens = {t["token"]: RefreshToken(**t) for t in data.get("refresh_tokens", [])}
            core.consents = {(c["user_id"], c["client_id"]): set(c["scopes"]) for c in data.get("consents", [])}
        self.emu.set_token_secret(base64.b64decode(data["token_secret"]))
        self.emu.store.load(data["mailboxes"])
        for name, part in self.emu.persisted.items():
            if name in data.get("extensions", {}):
                part.load(data["extensions"][name])
        self._last_text = json.dumps(data, sort_keys=True)
        self._last_fingerprint = self._fingerprint()
        return True

    def _fingerprint(self) -> tuple[Any, ...]:
        core = self.emu.core
        with core.lock:
            generations = sum(u.token_generation for u in core.users.values())
            return (self.emu.store.version, self.emu.version_extra, len(core.users), len(core.apps),
                    len(core.access_tokens), len(core.refresh_tokens), len(core.consents), generations,
                    core.clock.offset, core.tenant_id)

    def save_if_changed(self) -> bool:
        fingerprint = self._fingerprint()
        now = time.monotonic()
        if fingerprint == self._last_fingerprint and now - self._last_full_check < FULL_CHECK_SECONDS:
            return False
        self._last_full_check = now
        self._last_fingerprint = fingerprint
        text = json.dumps(self.snapshot(), sort_keys=True)
        if text == self._last_text:
            return False
        self._write(text)
        self._last_text = text
        return True

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, self.path)
