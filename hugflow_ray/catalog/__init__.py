"""The dataset manager: the catalog's entries fetched, verified, extracted and synced."""
