"""The rollout gate on top of runs: costs, compare, scaling, mitigation, break point."""
