"""Six-field NCRONTAB schedules, as Azure Functions timer triggers use them.

    {second} {minute} {hour} {day} {month} {day-of-week}

Each field is `*`, a value, a range `a-b`, a step (`*/n`, `a-b/n`, or `a/n` meaning a..max every n), or a
comma-separated list of those. Months and weekdays also take names (JAN, January, MON, ...; like NCrontab, any
case-insensitive prefix of the full name). Day-of-week is 0-6 with Sunday = 0.

Day-of-month and day-of-week must BOTH match (NCrontab's rule; classic Vixie cron ORs them instead).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December")
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")

# Give up looking for the next occurrence after this many years (e.g. "0 0 0 31 2 *" never happens).
SEARCH_YEARS = 8


class CronError(ValueError):
    """The expression is not a valid six-field NCRONTAB schedule; the message says why, in one line."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()


_FIELDS = (
    _FieldSpec("second", 0, 59),
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day", 1, 31),
    _FieldSpec("month", 1, 12, MONTH_NAMES),
    _FieldSpec("day-of-week", 0, 6, WEEKDAY_NAMES),
)


def _value(spec: _FieldSpec, text: str, expression: str) -> int:
    if not text:
        raise CronError(f"'{expression}': empty value in the {spec.name} field")
    if text.isdigit():
        number = int(text)
    else:
        matches = [i for i, full in enumerate(spec.names) if full.lower().startswith(text.lower())]
        if not matches:
            raise CronError(f"'{expression}': '{text}' is not a valid {spec.name} value")
        number = matches[0] + spec.low
    if not spec.low <= number <= spec.high:
        raise CronError(f"'{expression}': {spec.name} value {number} is outside {spec.low}-{spec.high}")
    return number


def _parse_field(spec: _FieldSpec, text: str, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        stepped = "/" in part
        if stepped:
            part, _, step_text = part.partition("/")
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"'{expression}': step '{step_text}' in the {spec.name} field must be a positive number")
            step = int(step_text)
        if part == "*":
            low, high = spec.low, spec.high
        elif "-" in part:
            first, _, last = part.partition("-")
            low, high = _value(spec, first, expression), _value(spec, last, expression)
            if low > high:
                raise CronError(f"'{expression}': range {part} in the {spec.name} field runs backwards")
        else:
            low = _value(spec, part, expression)
            # "5/10" means 5, 15, 25, ... up to the field's maximum (NCrontab); "5" alone is just 5.
            high = spec.high if stepped else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule; `next_after(t)` is the first occurrence strictly after `t` (to the second)."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> "CronSchedule":
        parts = expression.split()
        if len(parts) != 6:
            raise CronError(
                f"'{expression}' must have 6 fields: second minute hour day month day-of-week "
                f"(got {len(parts)})"
            )
        fields = [_parse_field(spec, part, expression) for spec, part in zip(_FIELDS, parts, strict=True)]
        return cls(expression, *fields)

    def _day_matches(self, moment: datetime) -> bool:
        # Python's weekday() is Monday = 0; NCRONTAB's is Sunday = 0.
        return moment.day in self.days and (moment.weekday() + 1) % 7 in self.weekdays

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence after `moment` (timezone kept as given), or None if there is none."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit_year = candidate.year + SEARCH_YEARS
        while candidate.year <= limit_year:
            if candidate.month not in self.months:
                year, month = (candidate.year + 1, 1) if candidate.month == 12 else (candidate.year, candidate.month + 1)
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if not self._day_matches(candidate):
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
                continue
            if candidate.second not in self.seconds:
                later = [s for s in sorted(self.seconds) if s > candidate.second]
                if later:
                    candidate = candidate.replace(second=later[0])
                else:
                    candidate = candidate.replace(second=0) + timedelta(minutes=1)
                continue
            return candidate
        return None
