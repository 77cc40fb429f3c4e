"""Fixtures for the rollout tests: the tiny model's real tokenizer, scripted backends and tools."""

from __future__ import annotations




