"""The audit trail: capture, hash chain, signed checkpoints, verification and export."""
