"""Shell hook scripts for bash, zsh and fish, printed by `docpilot init SHELL`.

Each hook, after every command the user runs, appends one JSON `record` request to its own spool
file under the data root, using shell builtins only (no fork, no socket, no waiting); the daemon
ingests the spool (see docpilotd.runtime.capture). A hook sends nothing unless the capture marker
of its session exists (an Active session), and never prints anything at the prompt.
"""
