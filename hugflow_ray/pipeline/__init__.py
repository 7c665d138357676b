"""The stages of a sync, in data-flow order: plan, download, read, convert, write, ledger, report; and orchestration."""
