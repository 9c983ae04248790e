"""Test-only support: the in-memory adapters of sync_core/adapters/memory with fault injection, simulated
crashes, call counters and the people who use the CRM and Outlook (tests/support/fakes.py has them all)."""
