"""How good must a belief be? The oracle's score when the task vector it is shown is wrong or late.

Evaluates a trained oracle checkpoint (as `runtime eval` does: same test tasks, reset seeds and switch
schedules) while it is shown, instead of the true task vector, that vector plus Gaussian noise of `sigma`
per dimension (drawn once per task segment and held, like a belief that has settled on the wrong goal), and
for the first `delay` steps of every segment the previous segment's vector (at an episode's start: the mean
of the training tasks' vectors, the prior mean), like a belief that needs `delay` steps to re-infer. Each
setting's normalised score and adaptation delay are against the clean oracle and the random policy, so a
meta-learner's belief error can be read as "worth this much score".

With `--belief AGENT` the oracle is also shown, at every step, the task read from AGENT's belief (AGENT's
task readout, fitted on training-task episodes; on direction tasks its sign) while AGENT's encoder is fed
the oracle's own transitions. Its score beside AGENT's own splits what AGENT loses into what its belief
does not know (the oracle on the read task) and what its policy makes of the belief (the rest).

    python tools/studies/belief_error_study.py runs/oracle_pr_ns/policy.pt --sigma 0 0.05 0.1 0.2 0.3 \
        --delay 0 2 5 10 --episodes 64 --plot docs/img/belief_error_study.png
    python tools/studies/belief_error_study.py runtime/assets/oracle_cheetah_dir_ns.pt --sigma 0 --delay 0 2 5 \
        --belief runtime/assets/moss_cheetah_dir_ns.pt --episodes 40
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from agents.checkpoint import build_policy, build_readout, load_checkpoint
from agents.config import EnvConfig
from agents.evaluation import compare_to_reference, evaluation_episodes, make_env, summarize
from agents.evaluation.belief_probe import is_direction_family
from agents.evaluation.readout import fit_readout_on_rollouts
from agents.parts.readout import TaskReadout
from agents.policies import AgentPolicy, OraclePolicy, Spaces
from agents.policies.base import State


def with_oracle_weights(cls: type[OraclePolicy], ck, **settings) -> OraclePolicy:
    """`cls` (an OraclePolicy) built from oracle checkpoint `ck`'s spec plus `settings`, with its weights, in
    eval mode. Submodules `cls` adds (an agent, a readout) keep their own weights."""
    spec = dict(ck.policy_spec)
    spaces = Spaces(*(spec.pop(k) for k in ("obs_dim", "action_dim", "action_low", "action_high")))
    p = cls(spaces, **spec, **settings)
    missing, unexpected = p.load_state_dict(ck.policy_state, strict=False)
    own = tuple(f"{name}." for name, _ in p.named_children() if name != "actor")
    if unexpected or any(not k.startswith(own) for k in missing):
        raise ValueError(f"oracle weights do not fit {cls.__name__}: missing {missing}, unexpected {unexpected}")
    return p.eval()


class ImperfectOracle(OraclePolicy):
    """An oracle whose shown task vector is the segment's true one + N(0, sigma^2) noise, and the previous
    segment's (or `prior`) for the first `delay` steps of each segment. State: shown, target, previous,
    true vector and the segment's age in steps."""

    def __init__(self, *args, sigma: float = 0.0, delay: int = 0, prior: np.ndarray | None = None, seed: int = 0, **kw):
        super().__init__(*args, **kw)
        self.sigma, self.delay = sigma, delay
        self.prior = torch.zeros(self.task_dim) if prior is None else torch.as_tensor(prior, dtype=torch.float32)
        self.gen = torch.Generator().manual_seed(seed)

    def init_state(self, n: int) -> State:
        z = self.prior.expand(n, -1).clone()
        nan = torch.full_like(z, float("nan"))
        return {"task": z, "target": z.clone(), "previous": z.clone(), "true": nan, "age": torch.zeros(n, 1)}

    def set_task_vector(self, state: State, task_vector: torch.Tensor) -> State:
        tv = task_vector.reshape(-1, self.task_dim).to(torch.float32)
        new = ~(tv == state["true"]).all(-1, keepdim=True)  # a segment starts (NaN: the episode's first)
        noise = self.sigma * torch.randn(tv.shape, generator=self.gen)
        previous = torch.where(new, state["target"], state["previous"])  # the prior at the episode's start
        target = torch.where(new, tv + noise, state["target"])
        age = torch.where(new, torch.zeros_like(state["age"]), state["age"] + 1)
        shown = torch.where(age >= self.delay, target, previous)
        return {"task": shown, "target": target, "previous": previous, "true": tv, "age": age}


class ReadTaskOracle(OraclePolicy):
    """An oracle shown the task `readout` reads from `agent`'s belief instead of the true one (snapped to its
    sign when `direction`). State: the agent's state plus the shown task; the true vector is ignored."""

    def __init__(self, *args, agent: AgentPolicy, readout: TaskReadout, direction: bool, **kw):
        super().__init__(*args, **kw)
        self.agent, self.readout, self.direction = agent, readout, direction

    def _shown(self, state: State) -> State:
        task = self.readout(self.agent.belief(state))
        return {**state, "task": torch.sign(task) if self.direction else task}

    def init_state(self, n: int) -> State:
        return self._shown(self.agent.init_state(n))

    def update(self, state: State, s, a, r, s2) -> State:
        return self._shown(self.agent.update({k: v for k, v in state.items() if k != "task"}, s, a, r, s2))

    def set_task_vector(self, state: State, task_vector: torch.Tensor) -> State:
        return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="an oracle checkpoint (policy.pt)")
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3])
    ap.add_argument("--delay", type=int, nargs="+", default=[0, 2, 5, 10])
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=10_000, help="first reset seed (runtime eval's default)")
    ap.add_argument("--belief", help="an agent checkpoint: also the oracle shown the task read from its belief, beside the agent")
    ap.add_argument("--json", help="write the table here as JSON")
    ap.add_argument("--plot", help="write score vs sigma (one line per delay) here as PNG")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(args.checkpoint)
    if ck.algorithm != "oracle":
        raise SystemExit(f"{args.checkpoint}: an oracle checkpoint is needed, not {ck.algorithm!r}")
    env_cfg = EnvConfig.model_validate(ck.config["env"])
    e = make_env(env_cfg, "train")
    prior = np.mean([e.unwrapped.distribution.task_vector(t) for t in e.unwrapped.tasks("train")], 0)
    e.close()

    def oracle(sigma: float, delay: int) -> ImperfectOracle:
        return with_oracle_weights(ImperfectOracle, ck, sigma=sigma, delay=delay, prior=prior)

    ev = dict(split="test", episodes=args.episodes, seed=args.seed, nonstationary=None)
    clean = evaluation_episodes(oracle(0.0, 0), env_cfg, **ev)
    rand = evaluation_episodes(None, env_cfg, **ev)
    rows = []
    print(f"oracle {summarize(clean)['mean_return']:.1f}, random {summarize(rand)['mean_return']:.1f} ({args.episodes} test episodes)")
    print(f"{'sigma':>6} {'delay':>5} {'return':>8} {'score':>6} {'median delay':>12}")
    for delay in args.delay:
        for sigma in args.sigma:
            recs = evaluation_episodes(oracle(sigma, delay), env_cfg, **ev)
            cmp = compare_to_reference(recs, [clean], rand)
            row = dict(sigma=sigma, delay=delay, mean_return=summarize(recs)["mean_return"], **cmp)
            rows.append(row)
            print(f"{sigma:6.2f} {delay:5d} {row['mean_return']:8.1f} {row['normalised_score']:6.2f} {row['adaptation_delay']['median']!s:>12}", flush=True)
    if args.belief:
        rows.extend(read_task_rows(args.belief, ck, env_cfg, ev, clean, rand))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "episodes": args.episodes, "rows": rows}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for delay in args.delay:
            rs = [r for r in rows if r.get("delay") == delay]
            ax.plot([r["sigma"] for r in rs], [r["normalised_score"] for r in rs], marker="o", label=f"{delay} step{'' if delay == 1 else 's'} late")
        ax.axhline(0.9, ls="--", c="grey", lw=1)
        ax.set_xlabel("task-vector error shown to the oracle (std per dimension)")
        ax.set_ylabel("normalised score")
        ax.set_title(f"{env_cfg.id}: the oracle with an imperfect task vector")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


def read_task_rows(path: str, ck, env_cfg: EnvConfig, ev: dict, clean: list, rand: list) -> list[dict]:
    """The agent at `path` and the oracle shown the task read from its belief, each against the clean oracle."""
    agent_ck = load_checkpoint(path)
    agent = build_policy(agent_ck)
    readout = build_readout(agent_ck)
    if readout is None:
        readout, _ = fit_readout_on_rollouts(agent, env_cfg)
    e = make_env(env_cfg, "train")
    direction = is_direction_family(e)
    e.close()
    shown = with_oracle_weights(ReadTaskOracle, ck, agent=agent, readout=readout, direction=direction)
    rows = []
    for name, policy in ((f"{agent_ck.algorithm} ({path})", agent), (f"oracle shown the task {agent_ck.algorithm}'s belief reads", shown)):
        recs = evaluation_episodes(policy, env_cfg, **ev)
        row = dict(agent=name, mean_return=summarize(recs)["mean_return"], **compare_to_reference(recs, [clean], rand))
        rows.append(row)
        print(f"{name}: return {row['mean_return']:.1f}, score {row['normalised_score']:.2f}, median delay {row['adaptation_delay']['median']}", flush=True)
    return rows


if __name__ == "__main__":
    main()
