"""Fixtures for the pinned model and real photos (see [detection])."""
