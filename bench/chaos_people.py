"""The simulated people of a chaos run, and what they did (the history the checks judge the end state by).

Each CRM user has a person on each side:
- in the CRM (the CRM's own storage, as the CRM screen writes it): create, edit, delete contacts, move them to
  another account ("change company"), rename accounts; tasks too for users who sync them;
- in Microsoft 365 (the ordinary Graph API on their own mailbox, `/users/{id}/...`, which the injected faults
  never match: faults aim at the app's `/me/...` and `$batch` traffic): create, edit, delete, move contacts out
  of and back into the synced folder, change their company; To Do tasks or calendar events for task users.

Every record a person creates carries a tag (`c12`: born in the CRM, `m7`: born in Outlook) at the end of its
last name or subject, so both sides can be matched without trusting the sync's own links, and a duplicate is
two records with one tag. Every action is stamped with a global sequence number; the checks compare stamps
("edited in the CRM after it was removed in Outlook"), never clocks.
"""
from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from m365_emulator.server import ControlClient
from sync_core.adapters.tables.crm import TableCrm
from sync_core.domain.errors import ConcurrencyError, NotFoundError, SyncError
from sync_core.domain.models import FOLDER_NAME, Address, CrmContact, CrmTask, TaskStatus, UserSyncSettings
from devhost.stack import WebClient

TAG = re.compile(r"\b([cm]\d+)$")
TASK_TAG = re.compile(r"\b([cm]\d+)\b")
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}
FIRST = ["Ada", "Alan", "Grace", "Katherine", "Edsger", "Barbara", "Donald", "Frances", "Tim", "Radia", "Ken",
         "Margaret", "Dennis", "Hedy", "Claude", "Sophie", "Niklaus", "Annie", "John", "Mary"]
LAST = ["Lovelace", "Turing", "Hopper", "Johnson", "Dijkstra", "Liskov", "Knuth", "Allen", "Berners-Lee",
        "Perlman", "Thompson", "Hamilton", "Ritchie", "Lamarr", "Shannon", "Wilson", "Wirth", "Easley"]
TITLES = ["Engineer", "Director", "Buyer", "Account Manager", "CTO", "Office Manager", "Analyst", "Founder"]
CITIES = ["London", "Leeds", "Bristol", "Cardiff", "Glasgow", "York", "Bath", "Oxford"]
_sequence = itertools.count(1)
_sequence_lock = threading.Lock()


def stamp() -> int:
    """The next global sequence number: the order of everything the people did."""
    with _sequence_lock:
        return next(_sequence)


def tag_of(last_name: str) -> str | None:
    found = TAG.search(last_name.strip())
    return found.group(1) if found else None


def task_tag_of(subject: str) -> str | None:
    found = TASK_TAG.search(subject)
    return found.group(1) if found else None


class TagMaker:
    def __init__(self) -> None:
        self._counts = {"c": itertools.count(1), "m": itertools.count(1)}
        self._lock = threading.Lock()

    def new(self, origin: str) -> str:
        with self._lock:
            return f"{origin}{next(self._counts[origin])}"


@dataclass
class History:
    """What the people did to one tagged record (contact or task)."""

    tag: str
    origin: str  # "crm" | "ms"
    crm_id: str | None = None
    crm_seen: bool = False  # observed in the CRM at least once: must never be lost
    crm_deleted: int = 0
    last_crm_edit: int = 0  # creation in the CRM counts as an edit
    last_ms_edit: int = 0
    last_ms_removal: int = 0  # deleted in Microsoft, or moved out of the synced folder
    outside: dict[str, int] = field(default_factory=dict)  # items moved out of the folder → when
    last_in_folder: int = 0  # when the Outlook person last saw this tag in the folder
    moved_in_at: float = 0.0  # wall time of the last move back into the folder


@dataclass
class SimUser:
    key: str
    tenant_id: str
    user_id: str
    ms: dict[str, Any]
    settings: UserSyncSettings
    rng: random.Random
    owned_accounts: list[str] = field(default_factory=list)
    foreign_account: str = ""
    web: WebClient | None = None
    revoked_at: int = 0
    contacts: dict[str, History] = field(default_factory=dict)
    tasks: dict[str, History] = field(default_factory=dict)
    last_rename: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)  # actions that found nothing to act on, or failed
    journal: list[dict[str, Any]] = field(default_factory=list)  # every action done, for diagnosing a failed check
    # Held for a whole action: a settings switch or reconnect never lands in the middle of one.
    lock: Any = field(default_factory=threading.RLock)

    @property
    def revoked(self) -> bool:
        return self.revoked_at > 0


class GraphPerson:
    """The person in Outlook: Graph on their own mailbox with a token from the emulator's control API."""

    def __init__(self, graph_url: str, control: ControlClient, ms_user: dict[str, Any]) -> None:
        self.base = f"{graph_url}/users/{ms_user['id']}"
        self.control = control
        self.ms_id = str(ms_user["id"])
        self.http = httpx.Client(timeout=30, trust_env=False)
        self._token = ""
        self._folders: dict[str, str] = {}
        self._todo_list = ""

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        for attempt in range(6):
            if not self._token:
                self._token = self.control.token(self.ms_id)
            response = self.http.request(method, self.base + path, json=body,
                                         headers={"Authorization": f"Bearer {self._token}", **IMMUTABLE})
            if response.status_code == 401:  # the emulator clock moved past the token's expiry
                self._token = ""
                continue
            if response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After", "1")) * (attempt + 1) / 2)
                continue
            return response
        return response

    def folder_id(self, name: str) -> str | None:
        if name not in self._folders:
            answer = self.request("GET", "/contactFolders?$top=100")
            for folder in answer.json().get("value", []) if answer.status_code == 200 else []:
                if folder.get("displayName") in (FOLDER_NAME, "Contacts"):
                    self._folders.setdefault(folder["displayName"], folder["id"])
        return self._folders.get(name)

    def forget_folders(self) -> None:
        self._folders.clear()
        self._todo_list = ""

    def folder_contacts(self, folder_id: str) -> list[dict[str, Any]]:
        answer = self.request("GET", f"/contactFolders/{folder_id}/contacts?$top=999")
        if answer.status_code == 404:
            self.forget_folders()
            return []
        answer.raise_for_status()
        return list(answer.json().get("value", []))

    def todo_list_id(self) -> str | None:
        if not self._todo_list:
            answer = self.request("GET", "/todo/lists")
            for item in answer.json().get("value", []) if answer.status_code == 200 else []:
                if item.get("displayName") == FOLDER_NAME:
                    self._todo_list = item["id"]
        return self._todo_list or None

    def todo_tasks(self) -> list[dict[str, Any]]:
        list_id = self.todo_list_id()
        if list_id is None:
            return []
        answer = self.request("GET", f"/todo/lists/{list_id}/tasks?$top=999")
        if answer.status_code == 404:
            self._todo_list = ""
            return []
        answer.raise_for_status()
        return list(answer.json().get("value", []))

    def events(self) -> list[dict[str, Any]]:
        answer = self.request("GET", "/events?$top=999")
        answer.raise_for_status()
        return list(answer.json().get("value", []))


# -- content -----------------------------------------------------------------------------------------

def _phone(rng: random.Random) -> str:
    return f"+44 20 7946 {rng.randint(1000, 9999)}"


def new_crm_contact(user: SimUser, tag: str, account_id: str) -> CrmContact:
    rng = user.rng
    return CrmContact(
        id="", tenant_id=user.tenant_id, account_id=account_id, first_name=rng.choice(FIRST),
        last_name=f"{rng.choice(LAST)} {tag}", emails=(f"{tag}.{rng.randint(1, 999)}@example.com",),
        business_phone=_phone(rng), job_title=rng.choice(TITLES),
        address=Address(city=rng.choice(CITIES), country="United Kingdom"), notes=f"Met at event {rng.randint(1, 99)}")


def crm_edit(rng: random.Random, contact: CrmContact, tag: str) -> CrmContact:
    """A change of content (an edit that changes nothing is no edit: the checks would expect it pushed)."""
    for _ in range(8):
        changed = _crm_edit_once(rng, contact, tag)
        if changed != contact:
            return changed
    return contact.model_copy(update={"notes": f"{contact.notes} +"})


def _crm_edit_once(rng: random.Random, contact: CrmContact, tag: str) -> CrmContact:
    field_name = rng.choice(["job_title", "business_phone", "mobile_phone", "notes", "emails", "city"])
    if field_name == "job_title":
        return contact.model_copy(update={"job_title": f"{rng.choice(TITLES)} {rng.randint(1, 999)}"})
    if field_name in ("business_phone", "mobile_phone"):
        return contact.model_copy(update={field_name: _phone(rng)})
    if field_name == "notes":
        return contact.model_copy(update={"notes": f"Called on day {rng.randint(1, 9999)}"})
    if field_name == "emails":
        return contact.model_copy(update={"emails": (f"{tag}.{rng.randint(1000, 9999)}@example.com",)})
    return contact.model_copy(update={"address": contact.address.model_copy(update={"city": rng.choice(CITIES)})})


def new_graph_contact(rng: random.Random, tag: str, companies: list[str]) -> dict[str, Any]:
    first, last = rng.choice(FIRST), f"{rng.choice(LAST)} {tag}"
    return {"givenName": first, "surname": last, "displayName": f"{first} {last}",
            "emailAddresses": [{"address": f"{tag}.{rng.randint(1, 999)}@example.com"}],
            "jobTitle": rng.choice(TITLES), "companyName": graph_company(rng, companies),
            "mobilePhone": _phone(rng), "businessAddress": {"city": rng.choice(CITIES)}}


def graph_company(rng: random.Random, companies: list[str]) -> str:
    """A company as a person types it: an existing account's name (sometimes in other case and spacing), a new
    company, or none."""
    roll = rng.random()
    if companies and roll < 0.55:
        return rng.choice(companies)
    if companies and roll < 0.7:
        return "  " + rng.choice(companies).upper() + " "
    if roll < 0.9:
        return f"Newco {rng.randint(1, 9999)} Ltd"
    return ""


def graph_edit(rng: random.Random) -> dict[str, Any]:
    field_name = rng.choice(["jobTitle", "mobilePhone", "personalNotes", "businessPhones", "city"])
    if field_name == "jobTitle":
        return {"jobTitle": f"{rng.choice(TITLES)} {rng.randint(1, 999)}"}
    if field_name == "mobilePhone":
        return {"mobilePhone": _phone(rng)}
    if field_name == "personalNotes":
        return {"personalNotes": f"Outlook note {rng.randint(1, 9999)}"}
    if field_name == "businessPhones":
        return {"businessPhones": [_phone(rng)]}
    return {"businessAddress": {"city": rng.choice(CITIES)}}


def due_for(rng: random.Random, zone: str) -> tuple[date | None, datetime | None]:
    """A due day (all-day), a due instant (timed), or none; always inside the calendar window."""
    roll = rng.random()
    today = datetime.now(UTC).date()
    day = today + timedelta(days=rng.randint(-3, 40))
    if roll < 0.45:
        return day, None
    if roll < 0.85:
        local = datetime(day.year, day.month, day.day, rng.randint(8, 17), rng.choice([0, 15, 30, 45]),
                         tzinfo=ZoneInfo(zone))
        return None, local.astimezone(UTC)
    return None, None


# -- the people ----------------------------------------------------------------------------------------

class People:
    """Runs the people's actions for one user (one thread per user; a user's actions are sequential)."""

    def __init__(self, user: SimUser, crm: TableCrm, person: GraphPerson, tags: TagMaker) -> None:
        self.user = user
        self.crm = crm
        self.person = person
        self.tags = tags

    # -- choosing ------------------------------------------------------------------------------------
    def act(self, allow: set[str]) -> str:
        """One action, chosen by weight among those allowed; returns its name."""
        user, rng = self.user, self.user.rng
        weights: dict[str, float] = {
            "crm_create": 1.2, "crm_edit": 1.6, "crm_delete": 0.45, "crm_company": 0.6, "crm_rename": 0.12,
            "ms_create": 0.9, "ms_edit": 1.2, "ms_delete": 0.35, "ms_move_out": 0.35, "ms_move_in": 0.3,
            "ms_company": 0.4,
        }
        if user.settings.tasks_enabled:
            weights.update({"crm_task_create": 0.7, "crm_task_edit": 0.9, "crm_task_delete": 0.25,
                            "ms_task_create": 0.5, "ms_task_edit": 0.7, "ms_task_delete": 0.2})
        if user.settings.mode.value == "microsoft_to_crm":
            # Renaming an account rewrites the company of contacts Outlook never hears of in this mode; the
            # checks could not tell which, so this user's CRM person does not rename.
            weights.pop("crm_rename")
        choices = [name for name in weights if name in allow]
        name = rng.choices(choices, [weights[n] for n in choices])[0]
        try:
            with user.lock:
                done = getattr(self, name)()
        except (SyncError, httpx.HTTPError) as exc:
            # Storage restarting, Graph busy: the person tries something else later.
            user.missed[f"{name}:{type(exc).__name__}"] += 1
            return name
        if done:
            user.ops[name] += 1
        else:
            user.missed[name] += 1
        return name

    def _did(self, action: str, tag: str, **detail: Any) -> int:
        """Stamp an action on a tag and write it to the user's journal; returns the stamp."""
        seq = stamp()
        self.user.journal.append({"seq": seq, "time": round(time.time(), 3), "action": action, "tag": tag, **detail})
        return seq

    def _history(self, tag: str, origin: str, tasks: bool = False) -> History:
        book = self.user.tasks if tasks else self.user.contacts
        with self.user.lock:
            if tag not in book:
                book[tag] = History(tag=tag, origin=origin)
            return book[tag]

    # -- the CRM person: contacts --------------------------------------------------------------------
    def _crm_contacts(self) -> list[tuple[str, CrmContact]]:
        tagged = []
        for contact in self.crm.list_contacts(self.user.tenant_id, limit=5000):
            tag = tag_of(contact.last_name)
            if tag is None:
                continue
            history = self._history(tag, "crm" if tag.startswith("c") else "ms")
            history.crm_seen, history.crm_id = True, contact.id
            tagged.append((tag, contact))
        return tagged

    def observe_crm(self) -> None:
        self._crm_contacts()

    def crm_create(self, account_id: str | None = None) -> bool:
        user = self.user
        if account_id is None:
            account_id = user.foreign_account if user.rng.random() < 0.12 else user.rng.choice(user.owned_accounts)
        tag = self.tags.new("c")
        created = self.crm.create_contact(new_crm_contact(user, tag, account_id))
        history = self._history(tag, "crm")
        history.crm_id, history.crm_seen = created.id, True
        history.last_crm_edit = self._did("crm_create", tag, crm_id=created.id, account=account_id)
        return True

    def _update(self, tag: str, contact: CrmContact, change: Any) -> bool:
        for _ in range(4):
            try:
                written = self.crm.update_contact(change(contact))
                self._history(tag, "crm").last_crm_edit = self._did("crm_update", tag, crm_id=contact.id,
                                                                     account=written.account_id)
                return True
            except ConcurrencyError:
                fresh = self.crm.get_contacts(self.user.tenant_id, [contact.id]).get(contact.id)
                if fresh is None:
                    return False
                contact = fresh
            except NotFoundError:
                return False
        return False

    def crm_edit(self) -> bool:
        tagged = self._crm_contacts()
        if not tagged:
            return False
        tag, contact = self.user.rng.choice(tagged)
        return self._update(tag, contact, lambda c: crm_edit(self.user.rng, c, tag))

    def crm_company(self) -> bool:
        user = self.user
        tagged = self._crm_contacts()
        if not tagged:
            return False
        tag, contact = user.rng.choice(tagged)
        accounts = [a.id for a in self.crm.list_accounts(user.tenant_id) if a.id != contact.account_id]
        if not accounts:
            return False
        target = user.rng.choice(accounts)
        return self._update(tag, contact, lambda c: c.model_copy(update={"account_id": target}))

    def crm_delete(self) -> bool:
        tagged = self._crm_contacts()
        if not tagged:
            return False
        tag, contact = self.user.rng.choice(tagged)
        for _ in range(4):
            try:
                self.crm.delete_contact(self.user.tenant_id, contact.id)
                self._history(tag, "crm").crm_deleted = self._did("crm_delete", tag, crm_id=contact.id)
                return True
            except ConcurrencyError:
                continue  # the sync wrote it meanwhile: delete the fresh version
            except NotFoundError:
                return False
        return False

    def crm_rename(self) -> bool:
        user = self.user
        accounts = [a for a in self.crm.list_accounts(user.tenant_id) if a.id != user.foreign_account]
        if not accounts:
            return False
        account = user.rng.choice(accounts)
        renamed = self.crm.rename_account(user.tenant_id, account.id, f"Renamed {user.rng.randint(1, 99999)} Ltd")
        user.last_rename = self._did("crm_rename", "-", account=account.id, name=renamed.name)
        return True

    # -- the Outlook person: contacts ----------------------------------------------------------------
    def _folder(self) -> str | None:
        return self.person.folder_id(FOLDER_NAME)

    def _folder_items(self) -> list[tuple[str, dict[str, Any]]]:
        folder = self._folder()
        if folder is None:
            return []
        tagged = []
        seen = stamp()
        for item in self.person.folder_contacts(folder):
            tag = tag_of(str(item.get("surname") or ""))
            if tag is not None:
                tagged.append((tag, item))
                self._history(tag, "crm" if tag.startswith("c") else "ms").last_in_folder = seen
        return tagged

    def _companies(self) -> list[str]:
        return [a.name for a in self.crm.list_accounts(self.user.tenant_id)]

    def ms_create(self) -> bool:
        folder = self._folder()
        if folder is None:
            return False
        tag = self.tags.new("m")
        answer = self.person.request("POST", f"/contactFolders/{folder}/contacts",
                                     new_graph_contact(self.user.rng, tag, self._companies()))
        if answer.status_code != 201:
            return False
        self._history(tag, "ms").last_ms_edit = self._did("ms_create", tag, ms_id=answer.json().get("id"),
                                                          company=answer.json().get("companyName"))
        return True

    def _patch_contact(self, tag: str, item: dict[str, Any], body: dict[str, Any]) -> bool:
        answer = self.person.request("PATCH", f"/contacts/{item['id']}", body)
        if answer.status_code != 200:
            return False
        self._history(tag, "crm" if tag.startswith("c") else "ms").last_ms_edit = self._did(
            "ms_patch", tag, ms_id=item["id"], body=body)
        return True

    def ms_edit(self) -> bool:
        tagged = self._folder_items()
        if not tagged:
            return False
        tag, item = self.user.rng.choice(tagged)
        return self._patch_contact(tag, item, graph_edit(self.user.rng))

    def ms_company(self) -> bool:
        tagged = self._folder_items()
        if not tagged:
            return False
        tag, item = self.user.rng.choice(tagged)
        return self._patch_contact(tag, item, {"companyName": graph_company(self.user.rng, self._companies())})

    def ms_delete(self) -> bool:
        tagged = self._folder_items()
        if not tagged:
            return False
        tag, item = self.user.rng.choice(tagged)
        answer = self.person.request("DELETE", f"/contacts/{item['id']}")
        if answer.status_code != 204:
            return False
        self._history(tag, "crm" if tag.startswith("c") else "ms").last_ms_removal = self._did(
            "ms_delete", tag, ms_id=item["id"])
        return True

    def ms_move_out(self) -> bool:
        tagged = self._folder_items()
        elsewhere = self.person.folder_id("Contacts")
        if not tagged or elsewhere is None:
            return False
        tag, item = self.user.rng.choice(tagged)
        try:
            moved = self.person.control.move_contact(self.person.ms_id, item["id"], elsewhere)
        except RuntimeError:  # gone meanwhile (the sync deleted it)
            return False
        history = self._history(tag, "crm" if tag.startswith("c") else "ms")
        history.last_ms_removal = self._did("ms_move_out", tag, ms_id=item["id"], moved=moved["immutableId"])
        history.outside[str(moved["immutableId"])] = history.last_ms_removal
        return True

    def ms_move_in(self) -> bool:
        """Drag a contact moved out earlier back into the folder, when that cannot make a second copy: the tag
        is not in the folder now and was not since it moved out (the sync may have made a new one meanwhile, after
        a CRM edit, a rename of its account, or a create whose outcome it could not learn), and the CRM did not
        delete it."""
        folder = self._folder()
        if folder is None:
            return False
        present = {tag for tag, _ in self._folder_items()}
        user = self.user
        with user.lock:
            candidates = [(h, item_id) for h in user.contacts.values() for item_id, moved in h.outside.items()
                          if h.tag not in present and not h.crm_deleted and moved > h.last_crm_edit
                          and moved > user.last_rename and moved > h.last_in_folder]
        if not candidates:
            return False
        history, item_id = user.rng.choice(sorted(candidates, key=lambda c: (c[0].tag, c[1])))
        try:
            self.person.control.move_contact(self.person.ms_id, item_id, folder)
        except RuntimeError:
            history.outside.pop(item_id, None)
            return False
        history.outside.pop(item_id, None)
        self._did("ms_move_in", history.tag, ms_id=item_id)
        history.moved_in_at = time.time()
        return True

    # -- tasks ---------------------------------------------------------------------------------------
    def _crm_tasks(self) -> list[tuple[str, CrmTask]]:
        tagged = []
        for task in self.crm.tasks_assigned_to(self.user.tenant_id, self.user.user_id):
            tag = task_tag_of(task.subject)
            if tag is None:
                continue
            history = self._history(tag, "crm" if tag.startswith("c") else "ms", tasks=True)
            history.crm_seen, history.crm_id = True, task.id
            tagged.append((tag, task))
        return tagged

    def observe_tasks(self) -> None:
        self._crm_tasks()

    def crm_task_create(self) -> bool:
        user, rng = self.user, self.user.rng
        tag = self.tags.new("c")
        due_date, due_at = due_for(rng, user.settings.time_zone)
        created = self.crm.create_task(CrmTask(
            id="", tenant_id=user.tenant_id, account_id=rng.choice(user.owned_accounts), assigned_to=user.user_id,
            subject=f"Call {rng.choice(LAST)} {tag}", description=f"About order {rng.randint(1, 9999)}",
            due_date=due_date, due_at=due_at))
        history = self._history(tag, "crm", tasks=True)
        history.crm_id, history.crm_seen = created.id, True
        history.last_crm_edit = self._did("crm_task_create", tag, crm_id=created.id)
        return True

    def crm_task_edit(self) -> bool:
        user, rng = self.user, self.user.rng
        tagged = self._crm_tasks()
        if not tagged:
            return False
        tag, task = rng.choice(tagged)
        for _ in range(4):
            roll = rng.random()
            if roll < 0.35:
                changed = task.model_copy(update={"subject": f"Visit {rng.choice(LAST)} {tag}"})
            elif roll < 0.6:
                changed = task.model_copy(update={"description": f"Bring brochure {rng.randint(1, 9999)}"})
            elif roll < 0.85:
                due_date, due_at = due_for(rng, user.settings.time_zone)
                changed = task.model_copy(update={"due_date": due_date, "due_at": due_at})
            else:
                done = task.status is TaskStatus.OPEN
                changed = task.model_copy(update={"status": TaskStatus.DONE if done else TaskStatus.OPEN})
            if changed == task:
                continue  # no change of content is no edit: the checks would expect it sent
            try:
                self.crm.update_task(changed)
                self._history(tag, "crm", tasks=True).last_crm_edit = self._did("crm_task_update", tag, crm_id=task.id)
                return True
            except ConcurrencyError:
                fresh = self.crm.get_tasks(user.tenant_id, [task.id]).get(task.id)
                if fresh is None:
                    return False
                task = fresh
            except NotFoundError:
                return False
        return False

    def crm_task_delete(self) -> bool:
        tagged = self._crm_tasks()
        if not tagged:
            return False
        tag, task = self.user.rng.choice(tagged)
        for _ in range(4):
            try:
                self.crm.delete_task(self.user.tenant_id, task.id)
                self._history(tag, "crm", tasks=True).crm_deleted = self._did("crm_task_delete", tag, crm_id=task.id)
                return True
            except ConcurrencyError:
                continue
            except NotFoundError:
                return False
        return False

    def _ms_tasks(self) -> list[tuple[str, dict[str, Any]]]:
        items = self.person.todo_tasks() if self.user.settings.task_target.value == "todo" else self.person.events()
        key = "title" if self.user.settings.task_target.value == "todo" else "subject"
        return [(tag, item) for item in items if (tag := task_tag_of(str(item.get(key) or ""))) is not None]

    def ms_task_create(self) -> bool:
        user, rng = self.user, self.user.rng
        tag = self.tags.new("m")
        day = datetime.now(UTC).date() + timedelta(days=rng.randint(-2, 30))
        if user.settings.task_target.value == "todo":
            list_id = self.person.todo_list_id()
            if list_id is None:
                return False
            body: dict[str, Any] = {"title": f"Order {rng.choice(LAST)} {tag}",
                                    "body": {"content": f"Note {rng.randint(1, 999)}", "contentType": "text"}}
            if rng.random() < 0.7:
                body["dueDateTime"] = {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": user.settings.time_zone}
            answer = self.person.request("POST", f"/todo/lists/{list_id}/tasks", body)
        else:
            if rng.random() < 0.5:
                timing = {"isAllDay": True, "start": {"dateTime": f"{day.isoformat()}T00:00:00", "timeZone": "UTC"},
                          "end": {"dateTime": f"{(day + timedelta(days=1)).isoformat()}T00:00:00", "timeZone": "UTC"}}
            else:
                hour = rng.randint(8, 17)
                timing = {"start": {"dateTime": f"{day.isoformat()}T{hour:02d}:00:00", "timeZone": user.settings.time_zone},
                          "end": {"dateTime": f"{day.isoformat()}T{hour:02d}:30:00", "timeZone": user.settings.time_zone}}
            answer = self.person.request("POST", "/events", {
                "subject": f"Lunch {rng.choice(LAST)} {tag}", "body": {"content": "Agenda", "contentType": "text"},
                **timing})
        if answer.status_code != 201:
            return False
        created_id = str(answer.json().get("id", ""))
        self._history(tag, "ms", tasks=True).last_ms_edit = self._did("ms_task_create", tag, ms_id=created_id)
        return True

    def ms_task_edit(self) -> bool:
        user, rng = self.user, self.user.rng
        tagged = self._ms_tasks()
        if not tagged:
            return False
        tag, item = rng.choice(tagged)
        if user.settings.task_target.value == "todo":
            list_id = self.person.todo_list_id()
            roll = rng.random()
            if roll < 0.4:
                body: dict[str, Any] = {"title": f"Deliver {rng.choice(LAST)} {tag}"}
            elif roll < 0.7:
                body = {"status": "notStarted" if item.get("status") == "completed" else "completed"}
            else:
                body = {"body": {"content": f"Edited {rng.randint(1, 9999)}", "contentType": "text"}}
            answer = self.person.request("PATCH", f"/todo/lists/{list_id}/tasks/{item['id']}", body)
        else:
            body = ({"subject": f"Dinner {rng.choice(LAST)} {tag}"} if rng.random() < 0.6 else
                    {"body": {"content": f"Agenda {rng.randint(1, 9999)}", "contentType": "text"}})
            answer = self.person.request("PATCH", f"/events/{item['id']}", body)
        if answer.status_code != 200:
            return False
        self._history(tag, "crm" if tag.startswith("c") else "ms", tasks=True).last_ms_edit = self._did(
            "ms_task_patch", tag, ms_id=item["id"], body=body)
        return True

    def ms_task_delete(self) -> bool:
        user = self.user
        tagged = self._ms_tasks()
        if not tagged:
            return False
        tag, item = user.rng.choice(tagged)
        if user.settings.task_target.value == "todo":
            answer = self.person.request("DELETE", f"/todo/lists/{self.person.todo_list_id()}/tasks/{item['id']}")
        else:
            answer = self.person.request("DELETE", f"/events/{item['id']}")
        if answer.status_code != 204:
            return False
        self._history(tag, "crm" if tag.startswith("c") else "ms", tasks=True).last_ms_removal = self._did(
            "ms_task_delete", tag, ms_id=item["id"])
        return True
