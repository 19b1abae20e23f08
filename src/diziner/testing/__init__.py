"""Test support: a scripted OpenAI-compatible HTTP server (:mod:`diziner.testing.server`)."""
