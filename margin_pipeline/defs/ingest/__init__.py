"""File arrival to substrate: the ingest assets and job, and the sensor that launches them."""
