"""``Document``: a piece of text and the metadata that says where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError

__all__ = ["Document"]


@dataclass
class Document:
    """A text with metadata, shaped like langchain-core's ``Document``.

    Args:
        page_content: the text.
        metadata: anything JSON-like that describes the text (source, page, ...).
            Each document gets its own dict (the default is not shared).
    """

    page_content: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.page_content, str):
            # Caught here rather than in a prompt template, where the error would be obscure.
            raise ConfigurationError(
                f"Document page_content must be a str, not {type(self.page_content).__name__}"
            )
        if self.metadata is None:
            self.metadata = {}
        elif not isinstance(self.metadata, dict):
            raise ConfigurationError(
                f"Document metadata must be a dict, not {type(self.metadata).__name__}"
            )
