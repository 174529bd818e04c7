"""Scheduled pushes: daily deals and dormant-member win-back through a crash-safe outbox.

Empty in this milestone; see DESIGN.md §1 for what it will own.
"""
