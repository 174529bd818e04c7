"""What a log line may say about text Siyu does not own.

Members' messages and the model's output are personal or unpredictable (a model can be made to
repeat its prompt, and the prompt holds the member's words and the conversation): they are never
logged verbatim. A log line names them by message id and length instead; rejected model drafts
are named by the rule they broke and the offending term from our own lists, not by their text.

The one place model output used to reach the log is an exception's message: a failed LLM call
is logged as a fallback warning, and the exception's text may quote the response — langchain's
``ValueError`` quotes a body that is not a completion, openai's ``APIStatusError`` the error
body (some providers put the refused input there), pydantic's ``ValidationError`` the invalid
value. :func:`llm_failure` (:mod:`knowledge.redact`, shared with the knowledge layer's remote calls)
says what failed without any of that.

SQL parameters hold members' text too. At the default levels no SQL is logged: SQLAlchemy holds
its ``sqlalchemy`` logger at WARNING itself (set at import), and ``aiosqlite`` logs each call
(its arguments included) at DEBUG only. The engine hides parameters anyway
(``hide_parameters``, :func:`bot.db.create_engine`): in the text of every database error, which
the error boundaries log, and in SQLAlchemy's statements when an operator turns them on.
A root logger at DEBUG is an explicit choice to see everything, aiosqlite's arguments included.
"""

from __future__ import annotations

from knowledge.redact import llm_failure

__all__ = ["llm_failure"]
