"""Served policies, by algorithm name (what `runtime serve` and checkpoints rebuild)."""

from agents.policies.base import AgentPolicy, State, cat_states, put_state, select_state
from agents.policies.moss import MoSSPolicy
from agents.policies.oracle import OraclePolicy
from agents.policies.pearl import CoCOAPolicy, PEARLPolicy, TCLPolicy

POLICIES: dict[str, type[AgentPolicy]] = {
    p.algorithm: p for p in (MoSSPolicy, OraclePolicy, PEARLPolicy, TCLPolicy, CoCOAPolicy)
}

__all__ = [
    "POLICIES",
    "AgentPolicy",
    "CoCOAPolicy",
    "MoSSPolicy",
    "OraclePolicy",
    "PEARLPolicy",
    "State",
    "TCLPolicy",
    "cat_states",
    "put_state",
    "select_state",
]
