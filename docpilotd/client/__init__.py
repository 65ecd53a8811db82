"""The `docpilot` client. Imports only the standard library (argparse, socket, json) so that it
starts fast; it never imports asyncio, APScheduler, watchdog or msgspec."""
