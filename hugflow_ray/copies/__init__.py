"""A dataset copy on disk: where its files and state live, its ledger of finished rows, its status, its lock, its
manifests, and the store of copies under ``STORAGE_ROOT``. Pure file work: no Ray, no Hub, no audio."""
