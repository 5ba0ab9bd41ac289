"""What an operator relies on: alerts, SLAs, the run log, table maintenance."""
