"""Landing files -> substrate Delta tables (change feed on), per docs/contract.md."""
