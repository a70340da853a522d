"""Spend budgets in USD, per gateway key and per task, per UTC day and per calendar month.

  model.py     what a budget is, and its lines: one scope's limit for one period (`parse_budget` reads one)
  counters.py  what each line has spent and holds: in this process, or in the calls table for every instance
  tracker.py   `BudgetTracker`: reserve a call's worst case at admission, the verdict, then count its cost
  report.py    each budget's spend, what remains and when it resets (GET /v1/budgets, `switchboard budgets`)

How a budget is configured is config/budget.py's; core/admission applies the verdicts.
"""
