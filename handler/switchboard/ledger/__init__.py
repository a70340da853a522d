"""The call ledger: one CallRecord per request, priced, stored, queryable."""
