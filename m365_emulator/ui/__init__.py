"""The emulator's HTML screens under /_emulator/ui."""
