"""Documentation made from sessions: Markdown rendering (pure) and writing it out."""
