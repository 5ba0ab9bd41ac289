"""The stream assets and jobs, built from the registry of streams."""
