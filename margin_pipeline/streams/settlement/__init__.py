"""Settlement stream: half-hourly industry cost of every metering point (``settlement_cost_hh``)."""
