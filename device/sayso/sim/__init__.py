"""Tooling that never runs on the Pi: the simulated room, scenarios, reports, the bench and the demo."""
