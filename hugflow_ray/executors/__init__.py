"""Where conversion runs: an embedded or joined Ray (with the drivers' Ray jobs, the only place that imports Ray)."""
