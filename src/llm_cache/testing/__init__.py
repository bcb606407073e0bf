"""Test helpers for llm-cache: a fake OpenAI-compatible server and backend contract checks."""
