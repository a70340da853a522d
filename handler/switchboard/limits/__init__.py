"""Limits on what a caller may do: rate limits per key (ratelimit.py), spend budgets per task and key (budgets/).

Applied by core/admission; limits never import core, so everything they need is passed in.
"""
