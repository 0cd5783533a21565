"""Served policies, by algorithm name (what `runtime serve` and checkpoints rebuild)."""

from agents.policies.base import AgentPolicy, State, cat_states, put_state, select_state
from agents.policies.focal import FOCALPolicy, FOCALPPPolicy
from agents.policies.gridfilter import FilterPolicy
from agents.policies.moss import MoSSPolicy
from agents.policies.oracle import OraclePolicy
from agents.policies.pearl import CoCOAPolicy, PEARLPolicy, TCLPolicy

POLICIES: dict[str, type[AgentPolicy]] = {
    p.algorithm: p for p in (MoSSPolicy, OraclePolicy, FilterPolicy, PEARLPolicy, TCLPolicy, CoCOAPolicy, FOCALPolicy, FOCALPPPolicy)
}

__all__ = [
    "POLICIES",
    "AgentPolicy",
    "CoCOAPolicy",
    "FOCALPPPolicy",
    "FilterPolicy",
    "FOCALPolicy",
    "MoSSPolicy",
    "OraclePolicy",
    "PEARLPolicy",
    "State",
    "TCLPolicy",
    "cat_states",
    "put_state",
    "select_state",
]
