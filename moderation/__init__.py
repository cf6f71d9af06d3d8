"""Moderation: who may do what, and what is kept of it.

    reports.py   verified reports (message franking) queued for facilitators

Facilitator accounts, controls, incidents and the audit log join this package
with their issues. Like spaces/, nothing here does I/O or reads a clock.
"""
