"""Agents joining as a DaemonSet rollout does: --ramp-rate per second up to --users."""

from loadtest.agents.locust_user import AgentUser, RolloutShape


class Rollout(RolloutShape):
    pass


__all__ = ["AgentUser", "Rollout"]
