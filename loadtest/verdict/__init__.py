"""The verdict stage: SLOs as data, judged over a run record, and as pytest."""
