"""Scheduled pushes: daily deals and dormant-member win-back through a crash-safe outbox.

Members' segments (:mod:`campaigns.segments`), planning (:mod:`campaigns.planner`), copy
(:mod:`campaigns.copy`), the delivery policy (:mod:`campaigns.policy`), the outbox and its worker
(:mod:`campaigns.outbox`, :mod:`campaigns.worker`), the scheduler leader and its jobs
(:mod:`campaigns.leader`, :mod:`campaigns.scheduler`) and reports. Imports ``bot`` types and
storage and ``knowledge``, never ``adapters`` (an import-linter contract checks it); deliveries go
through ``bot.types.OutboundSender``.
"""
