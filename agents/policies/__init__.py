"""Served policies, by algorithm name (what `runtime serve` and checkpoints rebuild). These modules hold
inference only: no optimiser, loss or buffer is imported here."""

from agents.policies.base import (
    AgentPolicy,
    Spaces,
    State,
    beliefs_along,
    cat_states,
    put_state,
    select_state,
    settings_of,
)
from agents.policies.focal import FOCALPolicy, FOCALPPPolicy
from agents.policies.gridfilter import GridFilterPolicy
from agents.policies.moss import MoSSPolicy
from agents.policies.oracle import OraclePolicy
from agents.policies.pearl import CoCOAPolicy, PEARLPolicy, TCLPolicy

POLICIES: dict[str, type[AgentPolicy]] = {
    p.algorithm: p for p in (MoSSPolicy, OraclePolicy, GridFilterPolicy, PEARLPolicy, TCLPolicy, CoCOAPolicy, FOCALPolicy, FOCALPPPolicy)
}

__all__ = [
    "POLICIES",
    "AgentPolicy",
    "CoCOAPolicy",
    "FOCALPPPolicy",
    "GridFilterPolicy",
    "FOCALPolicy",
    "MoSSPolicy",
    "OraclePolicy",
    "PEARLPolicy",
    "Spaces",
    "State",
    "TCLPolicy",
    "beliefs_along",
    "cat_states",
    "put_state",
    "select_state",
    "settings_of",
]
