"""The pure domain: session model, changes and their state machine, validation.

Nothing in this package touches files, clocks, sockets or randomness: callers pass timestamps and ids
in, so applying the same changes to the same session always gives the same result (what journal
replay relies on).
"""
