"""The running daemon: engine, server, handlers, autosave, watcher, start-up and shutdown."""
