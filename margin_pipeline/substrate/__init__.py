"""Landing files -> substrate Delta tables (change feed on), per contracts.md."""
