"""`make chaos` / `python -m bench.chaos [--seed N] [--minutes M] [--profile short|long]`: the whole local system
under faults, then settled and checked.

    setup    Azurite (persistent, under the work dir), the Microsoft 365 emulator, the development host serving
             function_app.app (HTTP, webhook, queue worker); CRM tenants, accounts and contacts; each user
             launched from the CRM, settings saved over HTTP, connected through the real OAuth flow.
    chaos    simulated people act on both sides at random (chaos_people) while faults are injected at seeded
             moments (chaos_faults): every kind at least once, more in the long profile. Settings switch and
             users reconnect; one user's consent is revoked.
    settle   faults stop; rounds of syncs run until every user's round wrote nothing.
    check    per user, both sides read fresh and judged (chaos_oracle); pages over HTTP; every run record.

The timer: function_app's timer fires every 5 minutes, too rarely for a run of minutes, so the driver does
what it does — `freshness.tick(services)` (fan-out of one sync job per connected user, subscription renewals)
— every few seconds from its own process, against the same storage and queue. The queue worker, webhook and
pages are the development host's. Leases are shortened for the run (bench/chaos_host.py): a killed worker's
users are taken over within the run instead of after 15 minutes.

Prints a summary and writes bench/results/chaos-<profile>-<seed>.json. Exit code 0 when every check passed.
The work dir (Azurite data, worker log, actions and Graph requests) is removed only when every check passed;
when one failed it is kept and its path printed.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.chaos_faults import KINDS, Faults
from bench.chaos_oracle import Verdict, check_contacts, check_tasks
from bench.chaos_people import GraphPerson, People, SimUser, TagMaker
from bench.chaos_stack import ChaosStack, start_chaos_stack
from sync_core.app import freshness, jobs
from sync_core.app.services import Services
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.models import ContactScope, RunOutcome, RunRecord, SyncMode, TaskTarget, UserSyncSettings
from sync_core.web.settings_form import form_values
from devhost.stack import connect_with_emulator

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench.chaos")


@dataclass(frozen=True)
class UserPlan:
    key: str
    mode: SyncMode = SyncMode.TWO_WAY
    tasks: bool = False
    target: TaskTarget = TaskTarget.TO_DO
    time_zone: str = "Europe/London"
    revoke_at: float | None = None  # fraction of the chaos phase
    two_way_at: float | None = None  # switch crm_to_microsoft → two_way then
    target_switch_at: float | None = None  # switch the task target To Do → calendar then
    toggle_scope: bool = False
    # The user id of an earlier plan's user, in a tenant of its own: user ids repeat across CRM tenants,
    # and two people with one id must never touch each other's state.
    same_id_as: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    minutes: float
    users: tuple[UserPlan, ...]
    initial_contacts: int
    initial_tasks: int
    tick_seconds: float
    # Longer than any run of the profile takes (production: 900 s > the host's 10-minute function timeout), so
    # a live run never loses its lease; only a killed worker's lease runs out. The check below verifies it.
    lease_seconds: float
    graph_timeout: float
    pause: tuple[float, float]  # seconds a person waits between two actions
    extra_faults: int  # beyond one of each kind
    reconnects: int
    settle_timeout: float
    min_operations: int


SHORT = Profile(
    name="short", minutes=0.5, initial_contacts=5, initial_tasks=3, tick_seconds=3.0, lease_seconds=25.0,
    graph_timeout=2.0, pause=(0.05, 0.4), extra_faults=0, reconnects=1, settle_timeout=75.0, min_operations=150,
    users=(
        UserPlan("u1", tasks=True, target=TaskTarget.TO_DO),
        UserPlan("u2", mode=SyncMode.CRM_TO_MICROSOFT, two_way_at=0.5, toggle_scope=True),
        UserPlan("u3", mode=SyncMode.MICROSOFT_TO_CRM, same_id_as="u1"),
        UserPlan("u4", tasks=True, target=TaskTarget.CALENDAR, time_zone="America/New_York"),
        UserPlan("u5", revoke_at=0.55),
    ),
)
LONG = Profile(
    name="long", minutes=10.5, initial_contacts=25, initial_tasks=8, tick_seconds=8.0, lease_seconds=240.0,
    graph_timeout=3.0, pause=(0.0, 0.25), extra_faults=45, reconnects=6, settle_timeout=420.0, min_operations=5000,
    users=(
        UserPlan("u1", tasks=True, target=TaskTarget.TO_DO),
        UserPlan("u2", mode=SyncMode.CRM_TO_MICROSOFT, two_way_at=0.5, toggle_scope=True),
        UserPlan("u3", mode=SyncMode.MICROSOFT_TO_CRM, same_id_as="u1"),
        UserPlan("u4", tasks=True, target=TaskTarget.CALENDAR, time_zone="America/New_York"),
        UserPlan("u5", revoke_at=0.6),
        UserPlan("u6", tasks=True, target=TaskTarget.TO_DO, target_switch_at=0.45, toggle_scope=True,
                 same_id_as="u4"),
    ),
)
PROFILES = {"short": SHORT, "long": LONG}
DISRUPTIVE = ("worker_kill", "worker_kill_mid_write", "azurite_restart")


@dataclass
class Run:
    profile: Profile
    seed: int
    stack: ChaosStack
    users: list[SimUser]
    people: dict[str, People]
    persons: dict[str, GraphPerson]
    tags: TagMaker
    rng: random.Random
    faults: Faults | None = None
    ticks: Counter[str] = field(default_factory=Counter)
    scripted: Counter[str] = field(default_factory=Counter)
    old_targets: dict[str, list[TaskTarget]] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)


# -- setup --------------------------------------------------------------------------------------------

def _save_settings(run: Run, user: SimUser, settings: UserSyncSettings) -> None:
    assert user.web is not None
    for attempt in range(3):
        form = {**form_values(settings), "csrf": user.web.csrf()}
        answer = user.web.post_form("/api/settings", form)
        if answer.status_code == 303:
            user.settings = settings
            return
        if answer.status_code in (401, 403):  # the session ran out: launch again from the CRM
            user.web.launch(user.tenant_id, user.user_id)
            continue
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"settings of {user.key} not saved: {answer.status_code} {answer.text[:300]}")


def setup(stack: ChaosStack, profile: Profile, seed: int) -> Run:
    rng = random.Random(seed)
    tags = TagMaker()
    run = Run(profile, seed, stack, [], {}, {}, tags, rng)
    own = {plan.key: f"{plan.key}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}" for plan in profile.users}
    ids = [own[plan.same_id_as or plan.key] for plan in profile.users]
    # Users are independent: set up side by side (each from its own seeded generator).
    with ThreadPoolExecutor(max_workers=len(profile.users)) as pool:
        made = list(pool.map(lambda args: _set_up_user(run, *args), enumerate(zip(profile.users, ids))))
    for user, people, person in made:
        run.users.append(user)
        run.people[user.key] = people
        run.persons[user.key] = person
    deadline = time.monotonic() + 120
    for user in run.users:  # the first sync makes the folder the Outlook person works in
        while True:
            connection = stack.services.connections.get(user.tenant_id, user.user_id)
            if connection is not None and connection.last_success_at is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the first sync of {user.key} did not succeed: {connection}")
            time.sleep(0.2)
    return run


def _set_up_user(run: Run, index: int, planned: tuple[UserPlan, str]) -> tuple[SimUser, People, GraphPerson]:
    plan, user_id = planned
    stack, profile, crm = run.stack, run.profile, run.stack.services.crm
    tenant = stack.stack.new_tenant()
    settings = UserSyncSettings(tenant_id=tenant, user_id=user_id, mode=plan.mode, tasks_enabled=plan.tasks,
                                task_target=plan.target, time_zone=plan.time_zone)
    user = SimUser(plan.key, tenant, user_id, stack.control.create_user(), settings,
                   random.Random(run.seed * 1000 + index))
    user.owned_accounts = [crm.create_account(tenant, name, user_id).id
                           for name in ("Acme Ltd", "Globex Corporation", "Initech")]
    user.foreign_account = crm.create_account(tenant, "Umbrella plc", "someone-else").id
    person = GraphPerson(stack.emulator.graph, stack.control, user.ms)
    people = People(user, crm, person, run.tags)
    for _ in range(profile.initial_contacts):
        people.crm_create()
    if plan.tasks:
        for _ in range(profile.initial_tasks):
            people.crm_task_create()
    user.web = stack.browser()
    user.web.launch(tenant, user_id)
    _save_settings(run, user, settings)  # before connecting: the first sync already uses them
    page = connect_with_emulator(user.web, user.ms)
    if "Connected to Microsoft 365" not in page.text:
        raise RuntimeError(f"{plan.key} did not connect: {page.status_code} {page.text[:300]}")
    return user, people, person


# -- the chaos phase ------------------------------------------------------------------------------------

def _tick(run: Run) -> None:
    try:
        report = freshness.tick(run.stack.services)
        run.ticks["ok" if not report.failed else "partial"] += 1
    except Exception as exc:  # storage restarting: the next tick goes again
        run.ticks[f"failed:{type(exc).__name__}"] += 1
        log.info("timer tick failed: %s", type(exc).__name__)


def _ticker(run: Run, stop: threading.Event) -> None:
    while not stop.wait(run.profile.tick_seconds):
        _tick(run)


def _person(run: Run, user: SimUser, stop: threading.Event) -> None:
    people = run.people[user.key]
    low, high = run.profile.pause
    while not stop.is_set():
        people.act(set(_ACTIONS))
        stop.wait(user.rng.uniform(low, high))


_ACTIONS = ("crm_create", "crm_edit", "crm_delete", "crm_company", "crm_rename", "ms_create", "ms_edit", "ms_delete",
            "ms_move_out", "ms_move_in", "ms_company", "crm_task_create", "crm_task_edit", "crm_task_delete",
            "ms_task_create", "ms_task_edit", "ms_task_delete")


def _large_push(run: Run) -> None:
    """Many new CRM contacts for one two-way user at once, so a create batch is in flight soon."""
    candidates = [u for u in run.users if not u.revoked and u.settings.mode is SyncMode.TWO_WAY]
    user = run.rng.choice(candidates)
    people = run.people[user.key]
    with user.lock:
        for _ in range(24):
            people.crm_create(user.owned_accounts[0])
            user.ops["crm_create"] += 1
    jobs.enqueue_sync(run.stack.services, user.tenant_id, user.user_id, "chaos")


def _switch_two_way(run: Run, user: SimUser) -> None:
    with user.lock:
        _save_settings(run, user, user.settings.model_copy(update={"mode": SyncMode.TWO_WAY}))
    run.scripted["switch_mode"] += 1


def _toggle_scope(run: Run, user: SimUser) -> None:
    with user.lock:
        scope = ContactScope.TENANT if user.settings.contact_scope is ContactScope.OWNED_ACCOUNTS else ContactScope.OWNED_ACCOUNTS
        _save_settings(run, user, user.settings.model_copy(update={"contact_scope": scope}))
    run.scripted["switch_scope"] += 1


def _switch_target(run: Run, user: SimUser) -> None:
    with user.lock:
        old = user.settings.task_target
        new = TaskTarget.CALENDAR if old is TaskTarget.TO_DO else TaskTarget.TO_DO
        _save_settings(run, user, user.settings.model_copy(update={"task_target": new}))
        run.old_targets.setdefault(user.key, []).append(old)
    run.scripted["switch_target"] += 1


def _reminders(run: Run, user: SimUser) -> None:
    with user.lock:
        minutes = run.rng.choice([None, 0, 15, 60, 1440])
        _save_settings(run, user, user.settings.model_copy(update={"timed_reminder_minutes": minutes}))
    run.scripted["switch_reminder"] += 1


def _reconnect(run: Run, user: SimUser) -> None:
    with user.lock:
        if user.revoked:
            return
        assert user.web is not None
        user.web.launch(user.tenant_id, user.user_id)
        page = connect_with_emulator(user.web, user.ms)
        if "Connected to Microsoft 365" not in page.text:
            raise RuntimeError(f"reconnecting {user.key} failed: {page.status_code} {page.text[:300]}")
    run.scripted["reconnect"] += 1


def _schedule(run: Run) -> list[tuple[float, str, Callable[[], None]]]:
    """(fraction of the chaos phase, what, do it): every fault kind once, extra faults, the scripted events."""
    rng, profile = run.rng, run.profile
    assert run.faults is not None
    faults = run.faults
    events: list[tuple[float, str, Callable[[], None]]] = []
    # Extra faults are mostly Graph's; a kill or restart stops everyone's syncs for a while, so fewer of those.
    weights = [0.25 if kind in DISRUPTIVE else 1.0 for kind in KINDS]
    kinds = list(KINDS) + rng.choices(KINDS, weights, k=profile.extra_faults)
    for kind in kinds:
        late = kind in DISRUPTIVE
        events.append((rng.uniform(0.03, 0.75 if late else 0.9), kind, lambda k=kind: faults.inject(k)))
    for user, plan in zip(run.users, profile.users):
        if plan.revoke_at is not None:
            events.append((plan.revoke_at, f"revoke {user.key}", lambda u=user: faults.revoke(u)))
        if plan.two_way_at is not None:
            events.append((plan.two_way_at, f"two-way {user.key}", lambda u=user: _switch_two_way(run, u)))
        if plan.target_switch_at is not None:
            events.append((plan.target_switch_at, f"target {user.key}", lambda u=user: _switch_target(run, u)))
        if plan.toggle_scope:
            for _ in range(2 if profile.name == "short" else 5):
                events.append((rng.uniform(0.05, 0.9), f"scope {user.key}", lambda u=user: _toggle_scope(run, u)))
        if plan.tasks:
            events.append((rng.uniform(0.05, 0.9), f"reminders {user.key}", lambda u=user: _reminders(run, u)))
    never_revoked = [u for u, p in zip(run.users, profile.users) if p.revoke_at is None]
    for _ in range(profile.reconnects):
        user = rng.choice(never_revoked)
        events.append((rng.uniform(0.05, 0.9), f"reconnect {user.key}", lambda u=user: _reconnect(run, u)))
    return sorted(events, key=lambda e: e[0])


def chaos(run: Run) -> None:
    run.faults = Faults(run.stack, run.users, random.Random(run.seed + 7), run.profile.graph_timeout,
                        lambda: _large_push(run))
    stop = threading.Event()
    threads = [threading.Thread(target=_ticker, args=(run, stop), name="chaos-timer", daemon=True)]
    threads += [threading.Thread(target=_person, args=(run, u, stop), name=f"person-{u.key}", daemon=True)
                for u in run.users]
    for thread in threads:
        thread.start()
    length = run.profile.minutes * 60
    started = time.monotonic()
    try:
        for fraction, what, do in _schedule(run):
            delay = started + fraction * length - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            log.info("chaos: %s", what)
            for attempt in range(3):
                try:
                    do()
                    break
                except Exception as exc:  # a fault that could not be injected is reported, not fatal
                    # e.g. storage unreachable while another fault restarts Azurite: tried again shortly.
                    run.scripted[f"failed:{what.split()[0]}:{type(exc).__name__}"] += 1
                    log.warning("chaos event %s failed (attempt %d): %s", what, attempt + 1, exc)
                    time.sleep(3.0)
        remaining = started + length - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


# -- settling -------------------------------------------------------------------------------------------

def _writes(record: RunRecord) -> int:
    return (record.crm.created + record.crm.updated + record.crm.deleted + record.microsoft.created
            + record.microsoft.updated + record.microsoft.deleted + record.conflicts)


def _queue_empty(run: Run) -> bool:
    """No sync job waiting. Visible messages only: a message a killed worker had taken stays invisible for the
    host's 10-minute lease (it runs again then, harmlessly); the approximate count includes it."""
    from azure.storage.queue import QueueClient

    settings = run.stack.settings
    client = QueueClient.from_connection_string(settings.storage_connection_string, settings.sync_queue_name)
    try:
        return not list(client.peek_messages(max_messages=1))
    finally:
        client.close()


def settle(run: Run) -> dict[str, Any]:
    """Sync rounds until one in which every connected user's runs succeeded and wrote nothing."""
    services = run.stack.services
    started = time.monotonic()
    deadline = started + run.profile.settle_timeout
    rounds: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        round_start = datetime.now(UTC)
        _tick(run)
        ticked = time.monotonic()
        waiting = {u.key for u in run.users}
        runs: dict[str, list[RunRecord]] = {}
        while waiting and time.monotonic() < deadline:
            if time.monotonic() - ticked >= run.profile.tick_seconds:
                _tick(run)  # the timer keeps firing while we wait, as it does in production
                ticked = time.monotonic()
            for user in run.users:
                if user.key not in waiting:
                    continue
                connection = services.connections.get(user.tenant_id, user.user_id)
                if connection is None or connection.status is not ConnectionStatus.CONNECTED:
                    waiting.discard(user.key)
                    continue
                recent = [r for r in services.state.latest_runs(user.tenant_id, user.user_id, 10) if r.started_at >= round_start]
                if recent and all(r.outcome is not RunOutcome.RUNNING for r in recent):
                    runs[user.key] = recent
                    waiting.discard(user.key)
            time.sleep(0.3)
        if waiting:
            break
        while not _queue_empty(run) and time.monotonic() < deadline:
            time.sleep(0.3)
        # Runs that started while the round was finishing belong to it too.
        for user in run.users:
            if user.key in runs:
                runs[user.key] = [r for r in services.state.latest_runs(user.tenant_id, user.user_id, 10) if r.started_at >= round_start]
        writes = {key: sum(_writes(r) for r in records) for key, records in runs.items()}
        outcomes = {key: sorted({r.outcome.value for r in records}) for key, records in runs.items()}
        rounds.append({"writes": writes, "outcomes": outcomes})
        if all(w == 0 for w in writes.values()) and all(o == ["succeeded"] for o in outcomes.values()) \
                and all(not r.outcome is RunOutcome.RUNNING for rs in runs.values() for r in rs):
            return {"settled": True, "seconds": round(time.monotonic() - started, 1), "rounds": rounds}
    return {"settled": False, "seconds": round(time.monotonic() - started, 1), "rounds": rounds}


# -- checks ---------------------------------------------------------------------------------------------

def _runs_in_progress(run: Run) -> list[RunRecord]:
    """Runs still holding a live lease: a job that found a lease held scheduled a follow-up for its expiry,
    and such a run may start after the last settling round (a no-op, unless something changed)."""
    now = datetime.now(UTC)
    return [r for u in run.users for r in run.stack.services.state.latest_runs(u.tenant_id, u.user_id, 5)
            if r.outcome is RunOutcome.RUNNING and r.lease_expires_at is not None and r.lease_expires_at > now]


def check(run: Run) -> dict[str, Any]:
    services = run.stack.services
    deadline = time.monotonic() + run.profile.lease_seconds + 10
    while _runs_in_progress(run) and time.monotonic() < deadline:
        time.sleep(0.3)  # judged once finished: a run in progress is neither stuck nor done
    verdicts: list[Verdict] = []
    run_outcomes: Counter[str] = Counter()
    abandoned_closed = 0
    stuck: list[str] = []
    for user in run.users:
        verdict = Verdict(user.key)
        connection = services.connections.get(user.tenant_id, user.user_id)
        assert connection is not None
        settings = connection.settings
        person = run.persons[user.key]
        person.forget_folders()
        check_contacts(user, settings, services.crm, person, verdict, agree=not user.revoked,
                       last_run_start=_last_completed_run_start(services, user) if user.revoked else None)
        if settings.tasks_enabled:
            check_tasks(user, settings, services.crm, person, verdict, agree=not user.revoked,
                        old_targets=run.old_targets.get(user.key, []))
        page = _settings_page(run, user)
        if user.revoked:
            if connection.status is not ConnectionStatus.RECONNECT_NEEDED:
                verdict.fail(f"revoked user's connection is {connection.status.value}, not reconnect_needed")
            if "has stopped" not in page or "Reconnect" not in page:
                verdict.fail("revoked user's settings page does not say reconnect needed")
        else:
            if connection.status is not ConnectionStatus.CONNECTED:
                verdict.fail(f"connection is {connection.status.value}")
            if connection.last_error:
                verdict.fail(f"settings page shows an error after settling: {connection.last_error[:200]}")
            if "has stopped" in page or "Connected to" not in page:
                verdict.fail("settings page does not show a working connection")
        records = services.state.latest_runs(user.tenant_id, user.user_id, 100_000)
        for record in records:
            run_outcomes[record.outcome.value] += 1
            if record.outcome is RunOutcome.RUNNING:
                stuck.append(f"{user.key}:{record.run_id}")
                verdict.fail(f"run {record.run_id} is still running (lease until {record.lease_expires_at})")
            if record.error == jobs.ABANDONED:
                abandoned_closed += 1
        finished = sorted((r for r in records if r.finished_at is not None and r.error != jobs.ABANDONED),
                          key=lambda r: r.started_at)
        for earlier, later in zip(finished, finished[1:]):
            assert earlier.finished_at is not None
            if later.started_at < earlier.finished_at:
                verdict.fail(f"runs {earlier.run_id} and {later.run_id} overlapped (a run outlived its lease)")
        crm_deletes = sum(r.crm.deleted for r in records)
        if crm_deletes:
            verdict.fail(f"{crm_deletes} CRM record(s) deleted by the sync (Microsoft deletes never delete CRM data)")
        verdict.counts["runs"] = len(records)
        verdicts.append(verdict)
    return {"verdicts": verdicts, "run_outcomes": dict(run_outcomes), "abandoned_runs_closed": abandoned_closed,
            "stuck_running": stuck}


def _settings_page(run: Run, user: SimUser) -> str:
    assert user.web is not None
    user.web.launch(user.tenant_id, user.user_id)
    return user.web.get("/api/settings").text


def _emulator_figures(run: Run) -> dict[str, int]:
    """Graph requests of the app (not the people) and how many of them met a fault."""
    app_client = run.stack.settings.client_id
    entries = [e for e in run.stack.control.requests(since=0) if e.get("client_id") == app_client]
    return {
        "graph_requests": len(entries),
        "graph_requests_faulted": sum(1 for e in entries if e.get("fault_id")),
        "graph_429": sum(1 for e in entries if e.get("status") == 429),
        "graph_5xx": sum(1 for e in entries if (e.get("status") or 0) >= 500),
        "graph_dropped": sum(1 for e in entries if e.get("dropped")),
        "graph_401": sum(1 for e in entries if e.get("status") == 401),
    }


def _devhost_figures(run: Run) -> dict[str, int]:
    lines = run.stack.devhost.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return {
        "queue_redeliveries": sum(1 for line in lines if "failed on message" in line),
        "poisoned_messages": sum(1 for line in lines if "moved to" in line and "-poison" in line),
        "sync_runs_logged": sum(1 for line in lines if '"event": "run"' in line),
        "coalesced": sum(1 for line in lines if '"event": "coalesced"' in line),
        "webhook_posts_accepted": sum(1 for line in lines if '"event": "webhook"' in line),
    }


# -- the whole run --------------------------------------------------------------------------------------

def run_chaos(profile: Profile, seed: int, workdir: Path | None = None, *, keep: bool = False,
              out: Path | None = None) -> dict[str, Any]:
    temporary = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"chaos-{profile.name}-{seed}-"))
    begun = time.monotonic()
    stack = start_chaos_stack(workdir, lease_seconds=profile.lease_seconds, graph_timeout=profile.graph_timeout)
    run: Run | None = None
    summary: dict[str, Any] | None = None
    try:
        run = setup(stack, profile, seed)
        run.phases["setup"] = round(time.monotonic() - begun, 1)
        mark = time.monotonic()
        chaos(run)
        run.phases["chaos"] = round(time.monotonic() - mark, 1)
        assert run.faults is not None
        hits = run.faults.stop_all()
        mark = time.monotonic()
        settled = settle(run)
        run.phases["settle"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        checked = check(run)
        run.phases["check"] = round(time.monotonic() - mark, 1)
        summary = _summary(run, hits, settled, checked, time.monotonic() - begun)
        summary["evidence"] = _keep_evidence(run, workdir)
    finally:
        for person in (run.persons.values() if run else []):
            person.close()
        stack.close()
        # A failed check (or a run that broke off) is diagnosed from the folder's logs and journals: kept.
        discard = temporary and not keep and summary is not None and summary["ok"]
        if discard:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"chaos: evidence kept in {workdir}", file=sys.stderr)
    assert summary is not None  # set unless the run raised
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = out or RESULTS / f"chaos-{profile.name}-{seed}.json"
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    summary["result_file"] = str(path)
    summary["workdir"] = None if discard else str(workdir)
    return summary


def _keep_evidence(run: Run, workdir: Path) -> dict[str, str]:
    """What a failed check is diagnosed from, beside the worker's log: every action of the people (in order,
    with the tags and ids they touched) and every Graph request of the app (status, fault)."""
    actions = workdir / "actions.jsonl"
    with actions.open("w", encoding="utf-8") as out:
        for entry in sorted((dict(e, user=u.key) for u in run.users for e in u.journal), key=lambda e: e["seq"]):
            out.write(json.dumps(entry, default=str) + "\n")
    requests = workdir / "graph-requests.jsonl"
    app_client = run.stack.settings.client_id
    with requests.open("w", encoding="utf-8") as out:
        for entry in run.stack.control.requests(since=0):
            if entry.get("client_id") == app_client:
                out.write(json.dumps({k: entry.get(k) for k in ("seq", "time", "method", "path", "status", "user_id",
                                                                 "in_batch", "batch_id", "fault_id", "dropped")})
                          + "\n")
    return {"actions": str(actions), "graph_requests": str(requests), "worker_log": str(run.stack.devhost.log_path)}


def _summary(run: Run, hits: dict[str, int], settled: dict[str, Any], checked: dict[str, Any],
             seconds: float) -> dict[str, Any]:
    assert run.faults is not None
    operations: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    for user in run.users:
        operations.update(user.ops)
        missed.update(user.missed)
    operations.update({f"settings:{k}": v for k, v in run.scripted.items() if not k.startswith("failed")})
    injected = dict(run.faults.log.injected)
    verdicts: list[Verdict] = checked["verdicts"]
    violations = [f"{v.user}: {message}" for v in verdicts for message in v.violations]
    checks = {
        "settled": settled["settled"],
        "every_kind_injected": all(kind in injected for kind in KINDS) and "revoke" in injected,
        "enough_operations": sum(operations.values()) >= run.profile.min_operations,
        "sides_agree_no_duplicates_nothing_lost": not violations,
        "further_sync_writes_nothing": settled["settled"],
        "no_run_stuck_running": not checked["stuck_running"],
    }
    return {
        "profile": run.profile.name, "seed": run.seed, "ok": all(checks.values()), "checks": checks,
        "violations": violations,
        "excused": [f"{v.user}: {message}" for v in verdicts for message in v.excused],
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "seconds": {"total": round(seconds, 1), **run.phases, "time_to_settle": settled["seconds"]},
        "users": [{"key": u.key, "mode": u.settings.mode.value, "scope": u.settings.contact_scope.value,
                   "tasks": u.settings.task_target.value if u.settings.tasks_enabled else None,
                   "revoked": u.revoked, **next(v.counts for v in verdicts if v.user == u.key)} for u in run.users],
        "operations": {"total": sum(operations.values()), "by_kind": dict(sorted(operations.items())),
                       "missed_or_failed": dict(sorted(missed.items()))},
        "faults": {"injected_by_kind": dict(sorted(injected.items())), "requests_hit_by_kind": hits,
                   "worker_kills": run.stack.devhost.kills, "events": run.faults.log.events},
        "runs": {"by_outcome": checked["run_outcomes"], "abandoned_closed": checked["abandoned_runs_closed"]},
        "retries": {**_emulator_figures(run), **_devhost_figures(run)},
        "timer_ticks": dict(run.ticks),
        "settle_rounds": settled["rounds"],
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"chaos {summary['profile']} seed {summary['seed']}: {'OK' if summary['ok'] else 'FAILED'}")
    seconds = summary["seconds"]
    print(f"  time: total {seconds['total']} s (setup {seconds.get('setup')}, chaos {seconds.get('chaos')}, "
          f"settle {seconds.get('settle')}, check {seconds.get('check')}); time to settle {seconds['time_to_settle']} s")
    ops = summary["operations"]
    print(f"  operations: {ops['total']}  " + ", ".join(f"{k} {v}" for k, v in ops["by_kind"].items()))
    faults = summary["faults"]
    print("  faults injected: " + ", ".join(f"{k} {v}" for k, v in faults["injected_by_kind"].items()))
    print("  requests hit by Graph faults: " + ", ".join(f"{k} {v}" for k, v in faults["requests_hit_by_kind"].items()))
    print(f"  runs: {summary['runs']['by_outcome']} (abandoned runs closed: {summary['runs']['abandoned_closed']})")
    print("  retries: " + ", ".join(f"{k} {v}" for k, v in summary["retries"].items()))
    for name, ok in summary["checks"].items():
        print(f"  [{'x' if ok else ' '}] {name}")
    for violation in summary["violations"][:50]:
        print(f"  VIOLATION {violation}")
    if summary.get("workdir"):
        print(f"  evidence (Azurite data, worker log, actions, Graph requests) kept in {summary['workdir']}")
    print(f"  -> {summary.get('result_file', '')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--minutes", type=float, default=None, help="length of the chaos phase (default: the profile's)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep Azurite's data and the logs here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="[%(asctime)s] %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("azure", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    profile = PROFILES[args.profile]
    if args.minutes is not None:
        profile = replace(profile, minutes=args.minutes)
    summary = run_chaos(profile, args.seed, args.workdir, keep=args.workdir is not None)
    print_summary(summary)
    return 0 if summary["ok"] else 1


def _last_completed_run_start(services: Services, user: SimUser) -> float:
    """When the user's last run that went through (succeeded or partial) started, in epoch seconds."""
    done = [r.started_at for r in services.state.latest_runs(user.tenant_id, user.user_id, 200)
            if r.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL)]
    return max(done).timestamp() if done else 0.0


if __name__ == "__main__":
    sys.exit(main())

