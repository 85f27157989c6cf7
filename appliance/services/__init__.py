"""Use cases and every business rule. Services take (session, actor, ...), flush but never commit,
and raise only ``errors.*``; the request wrapper, each job and each CLI command commit once."""
