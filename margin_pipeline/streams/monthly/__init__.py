"""Monthly stream: monthly margin of every account (``monthly_margin``), via a per-MPAN-day ledger."""
