"""The faults of a chaos run: what can go wrong around the sync, injected at seeded moments.

Graph faults are emulator rules aimed at the app's own traffic only (`/me/...` and `$batch`; the simulated
people use `/users/{id}/...`), each limited in how many requests it hits. The rest are done to the system
itself: delta tokens expired, the emulator clock moved past token expiry, a user's consent revoked, webhook
deliveries duplicated and delayed, lifecycle events, the worker process SIGKILLed (also while a Graph write
is in flight, after Graph did it and before the app could save its link), Azurite restarted.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.chaos_people import SimUser, stamp
from bench.chaos_stack import ChaosStack

APP_TRAFFIC = r"^/(me/|me$|\$batch)"
WRITES = r"^/\$batch$"

# Every kind a run injects at least once (the short profile too); the long profile repeats them.
KINDS = ("graph_429", "graph_503", "graph_slow", "graph_drop", "batch_items", "write_outcome_unknown",
         "delta_expired", "token_expiry", "webhook_chaos", "lifecycle", "worker_kill", "worker_kill_mid_write",
         "azurite_restart")


@dataclass
class FaultLog:
    injected: Counter[str] = field(default_factory=Counter)
    rules: dict[str, list[str]] = field(default_factory=dict)  # kind → emulator rule ids (hits read at the end)
    events: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, **detail: Any) -> None:
        with self.lock:
            self.injected[kind] += 1
            self.events.append({"kind": kind, "seq": stamp(), "t": round(time.monotonic(), 3), **detail})


class Faults:
    def __init__(self, stack: ChaosStack, users: list[SimUser], rng: random.Random, graph_timeout: float,
                 before_kill_mid_write: Callable[[], None]) -> None:
        self.stack = stack
        self.control = stack.control
        self.users = users
        self.rng = rng
        self.graph_timeout = graph_timeout
        self.before_kill_mid_write = before_kill_mid_write
        self.log = FaultLog()
        self.paused = threading.Event()  # set while the system is down (kill, restart): people keep going

    def _rule(self, kind: str, **spec: Any) -> None:
        rule = self.control.add_fault(**spec)
        with self.log.lock:
            self.log.rules.setdefault(kind, []).append(str(rule["id"]))
        self.log.note(kind, rule=rule["id"], spec={k: v for k, v in spec.items() if k != "path_regex"})

    def _connected(self) -> list[SimUser]:
        return [u for u in self.users if not u.revoked]

    # -- one of each kind --------------------------------------------------------------------------------
    def inject(self, kind: str) -> None:
        getattr(self, kind)()

    def graph_429(self) -> None:
        self._rule("graph_429", path_regex=APP_TRAFFIC, status=429, retry_after=self.rng.choice([1, 2]),
                   times=self.rng.randint(2, 6), probability=0.5)

    def graph_503(self) -> None:
        self._rule("graph_503", path_regex=APP_TRAFFIC, status=503, times=self.rng.randint(1, 4), probability=0.5)

    def graph_slow(self) -> None:
        # Past the client's timeout: a GET is retried, a write's outcome is unknown (found again by our tag).
        self._rule("graph_slow", path_regex=APP_TRAFFIC, delay_ms=int((self.graph_timeout + 1.5) * 1000),
                   times=self.rng.randint(1, 2), probability=0.5, in_batch=False)

    def graph_drop(self) -> None:
        self._rule("graph_drop", path_regex=APP_TRAFFIC, drop_connection=True, times=self.rng.randint(1, 3),
                   probability=0.5, in_batch=False)

    def batch_items(self) -> None:
        status = self.rng.choice([429, 500, 503])
        spec: dict[str, Any] = {"path_regex": r"^/me/", "status": status, "times": self.rng.randint(2, 8),
                                "probability": 0.4, "in_batch": True}
        if status == 429:
            spec["retry_after"] = 1
        self._rule("batch_items", **spec)

    def write_outcome_unknown(self) -> None:
        # Graph does the writes, then the answer is lost: the app must not write them twice.
        self._rule("write_outcome_unknown", method="POST", path_regex=WRITES, status=500, after=True, times=1)

    def delta_expired(self) -> None:
        user = self.rng.choice(self._connected())
        self.control.expire_delta_tokens(user.ms["id"])
        self.log.note("delta_expired", user=user.key)

    def token_expiry(self) -> None:
        seconds = self.rng.randint(3700, 5400)  # past the 1-hour access tokens: refresh tokens must be used
        self.control.advance_clock(seconds)
        self.log.note("token_expiry", advanced_seconds=seconds)

    def revoke(self, user: SimUser) -> None:
        self.control.revoke(user.ms["id"])
        user.revoked_at = stamp()
        # Its access token would work for up to an hour more: move the clock so the revocation bites now.
        self.control.advance_clock(3700)
        self.log.note("revoke", user=user.key)

    def webhook_chaos(self) -> None:
        probability, delay = round(self.rng.uniform(0.3, 0.9), 2), self.rng.choice([800, 1500, 2500])
        self.control.http.post("/notifications", json={"duplicate_probability": probability, "delay_ms": delay})
        self.log.note("webhook_chaos", duplicate_probability=probability, delay_ms=delay)

    def webhook_calm(self) -> None:
        self.control.http.post("/notifications", json={"duplicate_probability": 0, "delay_ms": 0})

    def lifecycle(self) -> None:
        subscriptions = self.control.http.get("/subscriptions").json().get("value", [])
        ours = [s for s in subscriptions if str(s.get("notificationUrl", "")).startswith(self.stack.url)]
        if not ours:
            self.log.note("lifecycle", skipped="no subscription yet")
            return
        chosen = self.rng.choice(sorted(ours, key=lambda s: str(s["id"])))
        event = self.rng.choice(["missed", "subscriptionRemoved", "reauthorizationRequired"])
        answer = self.control.http.post(f"/subscriptions/{chosen['id']}/lifecycle", json={"event": event})
        self.log.note("lifecycle", lifecycle_event=event, status=answer.status_code)

    def worker_kill(self) -> None:
        self.paused.set()
        try:
            self.stack.devhost.kill()
            self.log.note("worker_kill")
            time.sleep(self.rng.uniform(0.2, 1.5))
            self.stack.devhost.start()
        finally:
            self.paused.clear()

    def worker_kill_mid_write(self, wait: float = 25.0) -> None:
        """Hold the next $batch POST after Graph has done it, SIGKILL the worker while it waits for the
        answer: the writes exist in Microsoft 365, their links were never saved."""
        rule = self.control.add_fault(method="POST", path_regex=WRITES, delay_ms=30_000, after=True, times=1)
        with self.log.lock:
            self.log.rules.setdefault("worker_kill_mid_write", []).append(str(rule["id"]))
        self.before_kill_mid_write()  # a large push, so a write batch comes soon
        deadline = time.monotonic() + wait
        hit = False
        while time.monotonic() < deadline:
            rules = self.control.http.get("/faults").json().get("value", [])
            if any(r["id"] == rule["id"] and r["hits"] > 0 for r in rules):
                hit = True
                break
            time.sleep(0.05)
        self.paused.set()
        try:
            self.stack.devhost.kill()
            self.log.note("worker_kill_mid_write", in_flight=hit)
            time.sleep(0.3)
            self.stack.devhost.start()
        finally:
            self.paused.clear()

    def azurite_restart(self) -> None:
        self.paused.set()
        try:
            downtime = self.stack.restart_azurite()
            self.log.note("azurite_restart", downtime_seconds=round(downtime, 2))
        finally:
            self.paused.clear()

    # -- the end ---------------------------------------------------------------------------------------
    def hits(self) -> dict[str, int]:
        """How many requests each kind's emulator rules hit (read before the rules are cleared)."""
        rules = {str(r["id"]): int(r["hits"]) for r in self.control.http.get("/faults").json().get("value", [])}
        with self.log.lock:
            return {kind: sum(rules.get(i, 0) for i in ids) for kind, ids in self.log.rules.items()}

    def stop_all(self) -> dict[str, int]:
        hits = self.hits()
        self.control.clear_faults()
        self.webhook_calm()
        if not self.stack.devhost.alive:
            self.stack.devhost.start()
        return hits
