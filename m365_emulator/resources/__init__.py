"""Graph resources served by the emulator (contacts, To Do, calendars and events, subscriptions, `$batch`, /me) and
the /_emulator control API. Each exposes `register(emu)`; m365_emulator.app lists them."""
