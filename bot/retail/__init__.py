"""Retail answers from records: current deals, promotion status, products and prices, stores.

:class:`RetailAnswerer` routes a question (:mod:`bot.retail.router`), answers it with the skills
(:mod:`bot.retail.skills`) in the wording of :mod:`bot.retail.wording`, and hands every other
question to the configured answerer.
"""

from bot.retail.answerer import RetailAnswerer
from bot.retail.router import Intent, Route, route
from bot.retail.skills import Desk, Finding, Topic

__all__ = ["Desk", "Finding", "Intent", "RetailAnswerer", "Route", "Topic", "route"]
