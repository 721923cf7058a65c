"""Members and their points: the ledger in PostgreSQL and the member's Redis gate."""
