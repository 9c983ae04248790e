"""The one mapping between a CRM task, our normalised TaskFields and the Graph JSON of both task targets.

Time is where task sync goes wrong in peer products (lessons.md #6), so every rule is explicit here:
- An all-day task is due on a *day*. In To Do it is sent as midnight of that day in the user's zone; in the
  calendar as an all-day event spanning [day, day+1), both ends at midnight in that named zone. Read back, a
  due time that is midnight in the zone it is expressed in is a floating day (how Graph answers all-day events
  and the To Do apps' own tasks); any other time is an instant whose day is taken in the user's zone (how Graph
  answers our own To Do due dates, in UTC).
- A timed task is due at an *instant* (kept in UTC, to the minute). The calendar shows it as an event of
  `event_duration_minutes` starting then, written as the user's wall time in the user's zone — or in UTC when
  that wall time is ambiguous or skipped by a DST change, so the instant survives. To Do cannot hold a due time
  (its API keeps the date only), so a timed task shows there on its day and its time is kept by the CRM.
- Reminders follow the user's settings, never a per-task value: they are written on create and whenever the
  due changes, and not compared (a reminder edited in Outlook is the user's business).

What each target can represent is listed in REPRESENTED; the planner treats a field a target cannot hold as
unchanged on that side. The link of a task remembers a hash per field (not the values), so a three-way merge
can tell which side changed which field (`encode_synced` / `decode_synced`).
"""
from __future__ import annotations

# The mapping lives in three modules by what it does (timing.py, fields.py, graph_json.py); this one is
# where the rest of the code has always found it.

from sync_core.domain.text import html_to_text
from sync_core.kinds.tasks.fields import (
    BODY_MAX, FIELD_NAMES, REPRESENTED, SUBJECT_MAX, TIMING, SyncedTask, crm_to_task_fields, decode_synced,
    encode_synced, field_hashes, move_to_day, normalise_task, project, task_fields_to_crm,
)
from sync_core.kinds.tasks.graph_json import (
    APP_NAME, TASK_ID_PROPERTY, TRANSACTION_PREFIX, crm_id_of_transaction, event_create_body, event_patch_body,
    event_timing, graph_to_event_task, graph_to_task, graph_to_todo_task, todo_create_body, todo_patch_body,
    todo_timing, transaction_id,
)
from sync_core.kinds.tasks.timing import (
    at_local, event_reminder, normalise_instant, parse_graph_time, reminder_instant, user_zone,
)
