"""Models whose calls go through the cache. Any OpenAI-compatible server works."""

from .base import BaseLLM
from .openai import ChatOpenAI, OpenAI

__all__ = ["BaseLLM", "OpenAI", "ChatOpenAI"]
