"""risk: pre-trade reservations (orders.commands → matcher.commands) and post-trade ledger (risk.postings)."""
