"""Fixtures for a real mosquitto broker on loopback (see [mqtt])."""
