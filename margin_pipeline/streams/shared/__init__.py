"""Machinery every stream uses: calendar expressions, change-feed reduction, watermarks, the runner."""
