"""Pure records and rules: requests, names on disk, plans, encoder rules, sidecar JSON. Nothing heavy imported."""
