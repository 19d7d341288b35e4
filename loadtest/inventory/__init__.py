"""The inventory stage: a production-shaped object set, seeded idempotently."""
