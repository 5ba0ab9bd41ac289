"""Half-hourly stream: half-hourly revenue of MPAN-days on HH tariffs (``hh_revenue``)."""
