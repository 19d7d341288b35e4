"""A step load for finding the knee: --steps 'agents:seconds,...'."""

from loadtest.agents.locust_user import AgentUser, StepShape


class Steps(StepShape):
    pass


__all__ = ["AgentUser", "Steps"]
