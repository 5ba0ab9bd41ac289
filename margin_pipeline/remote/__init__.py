"""Stream outputs run outside the op: a Pipes subprocess locally, or a Databricks job cluster."""
