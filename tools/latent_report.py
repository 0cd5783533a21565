"""Latent-space report of a MoSS checkpoint on test tasks: cluster purity and a 2-D projection.

Runs `--episodes` evaluation episodes (one per test task, cycling), takes each episode's final belief,
and reports
  * purity: for the argmax mixture component, the share of episodes whose base task is the majority base
    of their component (1.0 = every component holds one base task);
  * a linear probe: R^2 of a least-squares map from the belief to the true task vector;
and draws the beliefs' first two principal components, coloured by base task, to `--plot`.

    python tools/latent_report.py runs/moss_cheetah_mt/policy.pt --episodes 40 --plot docs/img/latent.png
"""

from __future__ import annotations

import argparse
import json

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.checkpoint import build_policy, load_checkpoint  # noqa: E402
from agents.config import EnvConfig  # noqa: E402
from agents.evaluation import evaluation_episodes  # noqa: E402
from agents.evaluation.embedding import cluster_purity, linear_probe_r2  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--split", default="test")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_checkpoint(args.checkpoint)
    if ck.algorithm != "moss":
        raise SystemExit(f"error: {args.checkpoint} is a {ck.algorithm} checkpoint; this report needs a MoSS one")
    policy = build_policy(ck)
    env_cfg = EnvConfig.model_validate(ck.config["env"])
    recs = evaluation_episodes(policy, env_cfg, args.split, args.episodes, nonstationary="none", record_beliefs=True)
    D, K = policy.cfg["latent_dim"], policy.cfg["n_components"]
    # final hidden state of each episode -> component probabilities and belief
    finals, comps, bases, tvs = [], [], [], []
    for r in recs:
        state = policy.init_state(1)
        ep = r.episode
        with torch.no_grad():
            for t in range(len(ep)):
                state = policy.update(
                    state,
                    torch.as_tensor(ep.obs[t : t + 1]),
                    torch.as_tensor(ep.action[t : t + 1]),
                    torch.as_tensor(ep.reward[t : t + 1]),
                    torch.as_tensor(ep.next_obs[t : t + 1]),
                )
            post = policy.posterior(state)
            finals.append(policy.belief(state)[0, :D].numpy())
        comps.append(int(post.logits.argmax(-1)))
        bases.append(r.task_ids[0])
        tvs.append(ep.task_vector[-1])
    env_bases = [r.task_ids[0] for r in recs]
    import envs

    env = envs.make(env_cfg.id, split=args.split, seed=env_cfg.task_seed)
    by_id = {t.id: t.base for t in env.unwrapped.tasks(args.split)}
    bases = [by_id[i] for i in env_bases]
    x = np.asarray(finals)
    out = {
        "checkpoint": args.checkpoint,
        "env": env_cfg.id,
        "episodes": len(recs),
        "components": K,
        "purity": cluster_purity(comps, bases),
        "components_used": int(len(set(comps))),
        "linear_probe_r2": linear_probe_r2(x, np.asarray(tvs)),
    }
    print(json.dumps(out))
    if args.plot:
        xc = x - x.mean(0)
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        p2 = xc @ vt[:2].T if vt.shape[0] >= 2 else np.c_[xc[:, 0], np.zeros(len(xc))]
        fig, ax = plt.subplots(figsize=(6, 5))
        for b in sorted(set(bases)):
            m = np.array([bb == b for bb in bases])
            ax.scatter(p2[m, 0], p2[m, 1], label=b, s=25)
        ax.set_title(f"{env_cfg.id}: final belief mean, PCA (purity {out['purity']:.2f})")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
