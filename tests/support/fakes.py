"""Every fake the engine tests use, by the names they have always had."""
from sync_core.adapters.memory import CALENDAR, DEFAULT_CONTACTS_FOLDER, calendar_window
from tests.support.fake_microsoft import FakeMicrosoft, FakeMicrosoftTasks
from tests.support.fake_stores import FakeCrm, FakeStateStore
from tests.support.faults import Fault, Faults, SimulatedCrash

__all__ = ["CALENDAR", "DEFAULT_CONTACTS_FOLDER", "Fault", "Faults", "FakeCrm", "FakeMicrosoft", "FakeMicrosoftTasks",
           "FakeStateStore", "SimulatedCrash", "calendar_window"]
