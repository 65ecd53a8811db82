"""docpilotd: a background daemon that keeps DocPilot documentation sessions safe."""

__version__ = "0.1.0"
