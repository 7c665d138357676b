"""Where a sync runs: an embedded or joined Ray (the only place that imports Ray), or a driver child process."""
