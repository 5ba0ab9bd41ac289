"""The three grain-aligned streams (settlement, half_hourly, monthly), each its own Dagster job."""
