"""Served policies, by algorithm name (what `runtime serve` and checkpoints rebuild)."""

from agents.policies.base import AgentPolicy, State, cat_states, put_state, select_state
from agents.policies.moss import MoSSPolicy
from agents.policies.oracle import OraclePolicy

POLICIES: dict[str, type[AgentPolicy]] = {p.algorithm: p for p in (MoSSPolicy, OraclePolicy)}

__all__ = ["POLICIES", "AgentPolicy", "MoSSPolicy", "OraclePolicy", "State", "cat_states", "put_state", "select_state"]
