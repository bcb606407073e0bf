"""Prompt templates for the summarize chains, and the defaults (LangChain's, verbatim).

A template is ``str.format`` text with named fields. The summarize chains fill one
field, ``{text}``, with the document(s) to summarise; literal braces are written
``{{`` and ``}}``. Keeping LangChain's default wording matters beyond familiarity:
the prompt is part of the cache key, so the same wording is the same cache entry.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigurationError

__all__ = [
    "PromptTemplate",
    "DEFAULT_SUMMARY_TEMPLATE",
    "MAP_PROMPT",
    "COMBINE_PROMPT",
    "STUFF_PROMPT",
]


def _fields(template: str) -> list[str]:
    """The named fields of a format string, in order of first appearance."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # e.g. a single "{" or "}"
        raise ConfigurationError(
            f"prompt template is not a valid format string ({exc}); "
            "write literal braces as {{ and }}"
        ) from None
    names: list[str] = []
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ConfigurationError(
                "prompt template has a positional field '{}'; name it, e.g. '{text}'"
            )
        # "{doc.title}" or "{items[0]}" would reach into objects: not supported.
        if not name.isidentifier():
            raise ConfigurationError(
                f"prompt template field {{{name}}} must be a plain name such as {{text}}"
            )
        if name not in names:
            names.append(name)
    return names


class PromptTemplate:
    """A ``str.format`` template with declared input variables.

    Args:
        template: the text, e.g. ``"Summarize:\\n\\n{text}\\n\\nSUMMARY:"``.
        input_variables: the field names the template uses; by default the ones found
            in it. When given, they must be exactly the template's fields.

    The summarize chains require a ``{text}`` field (checked by
    :meth:`require`); other fields must be bound with :meth:`partial` first.
    """

    def __init__(self, template: str, input_variables: Sequence[str] | None = None) -> None:
        if not isinstance(template, str):
            raise ConfigurationError(f"template must be a str, not {type(template).__name__}")
        found = _fields(template)
        if input_variables is not None:
            declared = list(input_variables)
            if set(declared) != set(found):
                raise ConfigurationError(
                    f"input_variables {sorted(declared)} do not match the template's fields "
                    f"{sorted(found)}"
                )
        self.template = template
        self.input_variables = found
        self.partial_variables: dict[str, Any] = {}

    @classmethod
    def from_template(cls, template: str) -> PromptTemplate:
        """A template whose input variables are the fields found in ``template``."""
        return cls(template)

    def partial(self, **values: Any) -> PromptTemplate:
        """A copy with some fields filled in now (e.g. ``language="French"``)."""
        unknown = set(values) - set(self.input_variables)
        if unknown:
            raise ConfigurationError(
                f"partial() got fields the template does not have: {sorted(unknown)}"
            )
        copy = PromptTemplate(self.template)
        copy.partial_variables = {**self.partial_variables, **values}
        copy.input_variables = [v for v in self.input_variables if v not in copy.partial_variables]
        return copy

    def format(self, **values: Any) -> str:
        """Fill the fields; every input variable must be given, and nothing else."""
        missing = [v for v in self.input_variables if v not in values]
        extra = set(values) - set(self.input_variables)
        if missing or extra:
            raise ConfigurationError(
                f"prompt template needs {self.input_variables}; missing {missing}, "
                f"unexpected {sorted(extra)}"
            )
        return self.template.format(**self.partial_variables, **values)

    def require(self, variable: str, role: str) -> PromptTemplate:
        """Check that the only unfilled field is ``variable``; return self. ``role``
        names the argument in the error, e.g. ``"map_prompt"``."""
        if self.input_variables != [variable]:
            raise ConfigurationError(
                f"{role} must have exactly one unfilled field, {{{variable}}}, which receives the "
                f"document text; it has {['{' + v + '}' for v in self.input_variables]}"
                + (" (bind the others with .partial())" if variable in self.input_variables else "")
            )
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PromptTemplate):
            return NotImplemented
        return (self.template, self.partial_variables) == (other.template, other.partial_variables)

    def __repr__(self) -> str:
        return (
            f"PromptTemplate(template={self.template!r}, input_variables={self.input_variables!r})"
        )


def as_prompt(
    value: PromptTemplate | str | None, default: PromptTemplate, role: str
) -> PromptTemplate:
    """Accept a template object, a plain template string or ``None`` (the default)."""
    if value is None:
        prompt = default
    elif isinstance(value, PromptTemplate):
        prompt = value
    elif isinstance(value, str):
        prompt = PromptTemplate(value)
    else:
        raise ConfigurationError(
            f"{role} must be a PromptTemplate or a template string, not {type(value).__name__}"
        )
    return prompt.require("text", role)


#: LangChain's map-reduce and stuff summarize prompt, character for character.
DEFAULT_SUMMARY_TEMPLATE = (
    'Write a concise summary of the following:\n\n\n"{text}"\n\n\nCONCISE SUMMARY:'
)

MAP_PROMPT = PromptTemplate(DEFAULT_SUMMARY_TEMPLATE, ["text"])
COMBINE_PROMPT = PromptTemplate(DEFAULT_SUMMARY_TEMPLATE, ["text"])
STUFF_PROMPT = PromptTemplate(DEFAULT_SUMMARY_TEMPLATE, ["text"])
