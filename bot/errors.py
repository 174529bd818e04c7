"""Exceptions raised by the bot core.

SiyuError
├── ConfigError      settings are missing or contradict each other (raised at start-up)
└── AnswerError      the answerer could not produce an answer (the pipeline falls back)
    └── LLMError     the LLM call failed or timed out
"""

from __future__ import annotations


class SiyuError(Exception):
    """Root of the bot core's exceptions."""


class ConfigError(SiyuError):
    """Settings are missing or inconsistent."""


class AnswerError(SiyuError):
    """No answer could be produced by this answerer."""


class LLMError(AnswerError):
    """The LLM call failed, timed out or returned nothing usable."""
