"""The conversation's plumbing: messages, channels, stages, cancel scopes, the conductor and the turn log."""
