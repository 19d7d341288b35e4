"""Telemetry agents, a fixed count joining at --spawn-rate. Logic lives in loadtest.agents."""

from loadtest.agents.locust_user import AgentUser

__all__ = ["AgentUser"]
