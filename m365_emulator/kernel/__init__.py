"""The emulator's kernel: the `Emulator` (state, clock, store, faults, throttling, delta, persistence) and the Graph
router and request pipeline. It imports no resource, identity or UI module; they plug into it."""
