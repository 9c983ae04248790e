"""The page logic without HTTP: the settings form's validation, the status view, Graph time parsing."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.domain.models import TIMED_REMINDER_CHOICES, RunOutcome, RunRecord, SideCounts, UserSyncSettings
from sync_core.app.subscriptions import parse_graph_time
from sync_core.web.settings_form import TIMED_CHOICES, FormInvalid, form_values, parse_settings_form
from sync_core.web.status import AWAITING_FIRST_SYNC, status_view

CURRENT = UserSyncSettings(tenant_id="t", user_id="u")


def _form(**changes: str) -> dict[str, str]:
    return {**form_values(CURRENT), **changes}


def test_the_form_round_trips_the_current_settings() -> None:
    assert parse_settings_form(_form(), CURRENT) == CURRENT


@pytest.mark.parametrize("value", [value for value, _ in TIMED_CHOICES])
def test_every_offered_reminder_is_accepted(value: str) -> None:
    parsed = parse_settings_form(_form(timed_reminder_minutes=value, tasks_enabled="on"), CURRENT)
    assert parsed.timed_reminder_minutes in TIMED_REMINDER_CHOICES
    assert parsed.tasks_enabled


@pytest.mark.parametrize(("field", "value"), [
    ("timed_reminder_minutes", "7"), ("timed_reminder_minutes", "abc"), ("mode", "sideways"),
    ("all_day_reminder_time", "9am"), ("time_zone", "Nowhere/Town"), ("task_import_account", ""),
    ("event_duration_minutes", "2"), ("task_target", "fax"),
])
def test_invalid_values_name_their_field(field: str, value: str) -> None:
    with pytest.raises(FormInvalid) as caught:
        parse_settings_form(_form(**{field: value}), CURRENT)
    assert field in caught.value.errors


def test_the_caller_cannot_be_changed_through_the_form() -> None:
    parsed = parse_settings_form(_form(tenant_id="other", user_id="victim"), CURRENT)
    assert (parsed.tenant_id, parsed.user_id) == ("t", "u")


def _connection(**changes: object) -> Connection:
    return Connection(tenant_id="t", user_id="u", settings=CURRENT, **changes)  # type: ignore[arg-type]


def test_status_texts() -> None:
    assert status_view(None, None).headline == "Not connected to Microsoft 365"
    fresh = status_view(_connection(status=ConnectionStatus.CONNECTED, ms_account="a@b.test"), None)
    assert fresh.headline == "Connected to a@b.test" and fresh.last_success_text == AWAITING_FIRST_SYNC
    assert fresh.can_sync_now and not fresh.can_connect
    run = RunRecord(tenant_id="t", user_id="u", run_id="r", started_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
                    finished_at=datetime(2026, 1, 5, 9, 1, tzinfo=UTC), outcome=RunOutcome.SUCCEEDED,
                    microsoft=SideCounts(created=3), crm=SideCounts(updated=1, errors=1))
    synced = status_view(_connection(status=ConnectionStatus.CONNECTED, last_success_at=run.finished_at), run)
    assert synced.last_success_text == "05 Jan 2026, 09:01 (UTC)"
    assert ("Created in Microsoft 365", 3) in synced.counts and ("Errors", 1) in synced.counts
    broken = status_view(_connection(status=ConnectionStatus.RECONNECT_NEEDED, last_error="invalid_grant"), run)
    assert broken.problem == "invalid_grant" and broken.can_connect and not broken.can_sync_now
    assert "Reconnect" in (broken.fix or "")


@pytest.mark.parametrize(("text", "expected"), [
    ("2016-11-20T18:23:45.9356913Z", datetime(2016, 11, 20, 18, 23, 45, 935691, tzinfo=UTC)),
    ("2019-09-18T00:52:45.9696658+00:00", datetime(2019, 9, 18, 0, 52, 45, 969665, tzinfo=UTC)),
    ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=UTC)),
    ("not a time", None), (None, None), (5, None),
])
def test_graph_times_parse_with_seven_fraction_digits(text: object, expected: datetime | None) -> None:
    assert parse_graph_time(text) == expected
