"""Benchmarks (`make bench`): figures measured against Azurite and the Microsoft 365 emulator."""
