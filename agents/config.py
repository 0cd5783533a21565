"""Run configs: pydantic models loaded from YAML. Unknown keys, wrong types and missing files are refused
with a message naming them; the resolved config is stored in every checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file that cannot be used (the message names the file and the offending key)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


M = TypeVar("M", bound=Strict)


class EnvConfig(Strict):
    id: str
    task_seed: int = 0
    max_episode_steps: int | None = None
    nonstationary: Literal["periodic", "hazard"] | None = None
    interval: int = Field(100, ge=1)
    p: float = Field(0.5, ge=0.0, le=1.0)
    min_dwell: int | None = None
    kwargs: dict[str, Any] = {}

    def nonstationary_kwargs(self) -> dict[str, Any]:
        return {"interval": self.interval, "p": self.p, "min_dwell": self.min_dwell}


class SACConfig(Strict):
    hidden: tuple[int, ...] = (256, 256)
    lr: float = Field(3e-4, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    tau: float = Field(0.005, gt=0, le=1)
    alpha: float = Field(0.2, gt=0)
    auto_alpha: bool = False
    target_entropy: float | None = None
    reward_scale: float = 1.0
    max_grad_norm: float | None = None
    batch_size: int = Field(256, ge=1)


class EncoderConfig(Strict):
    """MoSS encoder / VAE settings (paper table names in comments)."""

    latent_dim: int = Field(5, ge=1)  # latent_size
    n_components: int = Field(1, ge=1)  # num_classes
    embed_dim: int = Field(32, ge=1)
    hidden_dim: int = Field(64, ge=1)
    include_probs: bool = False
    # what the policy reads: the belief (MoSS) or, as an ablation, the GRU state the belief is computed from
    policy_input: Literal["belief", "hidden"] = "belief"
    # Linear+ReLU widths between the GRU state and the latent (none: mu and logstd are linear in it)
    head_hidden: tuple[int, ...] = ()
    # Linear+ReLU widths before the embed_dim layer that feeds the GRU (none: the paper's single layer)
    embed_hidden: tuple[int, ...] = ()
    # not in the paper: standardise the encoder's transition features, and the decoders' inputs and
    # targets, by their mean and std over the buffer (recomputed each epoch, saved with the policy)
    normalize: bool = False
    # the recurrent cell: the paper's GRU, or (not in the paper) a gated running mean (agents/nets.py)
    cell: Literal["gru", "additive"] = "gru"
    lr: float = Field(3e-4, gt=0)  # lr_encoder = lr_decoder
    decoder_hidden: tuple[int, ...] = (64, 64)
    # not in the paper: the reward decoder "mlp" (any map) or "translation" (agents/nets.py TranslationReward:
    # a task is a target point A z in a linear feature of the transition [s, a, s' - s]; width decoder_hidden[-1];
    # its concave profile starts as a round cone when latent_dim is 2)
    reward_decoder: Literal["mlp", "translation"] = "mlp"
    batch_size: int = Field(64, ge=2)  # sequences per update
    time_steps: int = Field(64, ge=1)  # sequence length
    decode: Literal["segment", "task", "next"] = "segment"  # what the belief must reconstruct (agents/moss.py)
    decode_samples: int = Field(8, ge=1)  # transitions decoded per step (decode=segment or task)
    alpha_z: float = 1.0
    alpha_y: float = 1.0
    state_weight: float = 1.0
    reward_weight: float = 1.0
    contrastive_weight: float = 1.0
    contrastive: bool = True  # the paper skips it on non-stationary training data
    # not in the paper: > 0 subtracts cluster_weight * I(y; x) over each batch (agents/latent.py
    # component_information), so q(y) splits the data instead of collapsing onto one component
    cluster_weight: float = Field(0.0, ge=0)
    # not in the paper: > 0 adds agreement_weight * -log sum_k q_a(k) q_b(k) for each contrastive pair of
    # same-task windows (agents/latent.py component_disagreement), so a task keeps its component across
    # episodes and steps; with cluster_weight it asks for a partition of the *tasks*, not of the steps
    agreement_weight: float = Field(0.0, ge=0)
    task_prediction_weight: float = Field(0.0, ge=0)  # not MoSS: > 0 adds a privileged task-vector regression
    max_grad_norm: float | None = 1.0  # max_grad_norm_vae

    @model_validator(mode="after")
    def _check(self) -> EncoderConfig:
        if self.reward_decoder == "translation" and not self.decoder_hidden:
            raise ValueError("encoder.reward_decoder: translation takes its width from encoder.decoder_hidden[-1]: give at least one width")
        return self


class PearlConfig(Strict):
    """PEARL, TCL-PEARL and CoCOA (one section; `algorithm` picks the auxiliary loss: pearl = none, tcl =
    trajectory contrastive loss, cocoa = CoCOA's). The encoder steps with every SAC step (`train.policy_updates`
    per epoch); `train.encoder_updates` is MoSS's and is not used. See agents/pearl.py."""

    latent_dim: int = Field(5, ge=1)  # PEARL latent_size
    encoder_hidden: tuple[int, ...] = (200, 200)  # TCL: 2-layer MLP of 200 units
    encoder_lr: float = Field(3e-4, gt=0)  # PEARL context_lr
    kl_beta: float = Field(0.1, ge=0)  # PEARL kl_lambda: weight of KL(q(z|c) || N(0, I))
    meta_batch: int = Field(16, ge=1)  # training tasks per update; sac.batch_size is split among them
    # transitions per task of the RL context (PEARL embedding_batch_size; also tcl/cocoa, rl_context task)
    context_size: int = Field(64, ge=1)
    vary_context: bool = True  # the RL context of each task keeps a uniform 0..size of its transitions
    sample_z: bool = (
        False  # actor/critic on z ~ q(z|c) (PEARL) instead of the belief (mu, std) (Bayes-adaptive)
    )
    window: int = Field(64, ge=1)  # tcl/cocoa: crop length of the contrastive queries and keys
    # tcl/cocoa: the RL loss's context is pearl's (`context_size` steps drawn from the task's data) or the
    # query crop (measured worse: docs/results.md, issue 5)
    rl_context: Literal["task", "crop"] = "task"
    aux_batch: int | None = Field(None, ge=2)  # tcl/cocoa: queries per update (default meta_batch); extra
    #                                            trajectories beyond the meta-batch serve as queries/negatives only
    momentum: float = Field(
        0.995, ge=0, lt=1
    )  # key <- m key + (1 - m) query (TCL's "momentum 0.005" is 1 - m)
    temperature: float = Field(1.0, gt=0)  # InfoNCE logits = sim / temperature
    aux_weight: float = Field(1.0, ge=0)  # contrastive loss scale (TCL Table 4)


class FocalConfig(Strict):
    """FOCAL and FOCAL++ (paper 003; Table D.2 names in comments). See agents/focal.py."""

    latent_dim: int = Field(5, ge=1)  # latent space dimension
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    attention: Literal["none", "batch", "sequence", "series", "parallel"] = "none"  # FOCAL++ encoder blocks
    attention_width: int = Field(64, ge=1)  # transformer hidden size
    attention_heads: int = Field(4, ge=1)  # multihead
    reduction: int = Field(16, ge=1)  # reduction (batch attention)
    encoder_lr: float = Field(1e-3, gt=0)  # dml_lr
    meta_batch: int = Field(16, ge=2)  # meta batch size (tasks per update)
    context_size: int = Field(64, ge=1)  # transitions per task context (encoder batch = meta_batch x this)
    metric_weight: float = Field(1.0, ge=0)  # FOCAL's distance metric loss (DML loss weight)
    metric_beta: float = Field(1.0, gt=0)  # negative pairs: beta / (||z_i - z_j||^power + eps)
    metric_power: float = Field(2.0, gt=0)
    metric_eps: float = Field(0.1, gt=0)
    contrastive_weight: float = Field(0.0, ge=0)  # FOCAL++'s matrix-form momentum contrast (eqs. 8-9)
    temperature: float = Field(0.5, gt=0)  # contrastive T
    momentum: float = Field(0.9, ge=0, lt=1)  # contrastive m: key <- m key + (1 - m) query
    brac_strength: float = Field(0.0, ge=0)  # behaviour regularization strength (alpha)
    dual_lr: float = Field(1e-4, gt=0)  # g_lr (f-divergence discriminator)


class OfflineConfig(Strict):
    """Offline training data (datasets written by `runtime collect`)."""

    dataset: str  # training-split dataset (.npz)
    levels: list[str] | None = None  # quality levels to train on (default: all in the file)
    context_dataset: str | None = None  # test-split dataset: evaluation also acts on contexts drawn from it
    context_size: int = Field(64, ge=1)  # transitions per evaluation context


class FilterConfig(Strict):
    """Grid filter (agents/filter.py, not in the papers): Bayes' rule over a fixed latent grid."""

    grid: int = Field(16, ge=2)  # points per latent axis: K = grid ** latent_dim
    # reward decoder: "mlp" (any map from grid points to tasks) or "translation" (a task is a target point in
    # a learned linear feature of the transition: points map to targets affinely; agents/latent_filter.py)
    decoder: Literal["mlp", "translation"] = "mlp"
    # translation: start the concave profile as a round cone (hinge directions spread evenly over the circle,
    # 2-D latents) instead of random directions, which can start it as a ridge flat along one direction
    isotropic: bool = False
    latent_dim: int = Field(2, ge=1)
    hidden: int = Field(32, ge=1)  # reward decoder width (mlp: two hidden layers; translation: one per part)
    hazard: float = Field(0.02, gt=0, lt=1)  # prior probability per step that the task switches
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)  # whole episodes per likelihood step
    # shift the grid by a random offset within one cell at each likelihood step (serving uses the fixed
    # grid): the decoder must be smooth between grid points and sigma learns what the grid cannot place
    jitter: bool = False
    mode: bool = False  # the policy also sees the posterior's most likely grid point (agents/latent_filter.py)
    min_sigma: float = Field(0.0, ge=0)  # floor on the likelihood's learned noise scale (reward units)
    # acting (collection, evaluation, serving) filters on a grid with refine - 1 extra points between
    # neighbouring training-grid points, so unseen tasks are placed between them; learning stays on `grid`
    refine: int = Field(1, ge=1)
    # the policy also sees the belief in reward space: mean and std of the predicted reward at this many
    # transitions drawn from the first stored data (agents/latent_filter.py); meaningful where z is not
    probes: int = Field(0, ge=0)
    # coarse-to-fine learning: [[points per axis, until env step], ...] in order; the likelihood learns on
    # the first coarser grid whose step is not yet reached, then on `grid` (meant against a folding map;
    # on the point robot it did not prevent one: docs/results.md)
    coarse: list[tuple[int, int]] = []
    # a self-organising map's neighbourhood: while learning, the posterior weight with which a grid point
    # explains a reward is shared with its grid neighbours by a Gaussian of this std (z units), shrinking
    # linearly to 0 at `neighbourhood_until` env steps; neighbouring points are then pulled towards the same
    # tasks (meant to make the map unfold in order; on the point robot it did not: docs/results.md)
    neighbourhood: float = Field(0.0, ge=0)
    neighbourhood_until: int = Field(0, ge=0)
    # the likelihood step's gradient from this many grid points per step, drawn by their share of it (the
    # smoothed posterior), instead of all K: an unbiased estimate at a fraction of the decoder's cost; 0: exact
    grad_samples: int = Field(0, ge=0)
    # re-filter every stored episode with the moved likelihood only every this many epochs (new episodes
    # every epoch): the beliefs SAC reads lag the likelihood by up to N - 1 epochs, for 1/N of the cost
    relabel_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _learning_schedules_are_consistent(self) -> FilterConfig:
        sizes, steps = [g for g, _ in self.coarse], [u for _, u in self.coarse]
        if any(g < 2 for g in sizes) or sizes != sorted(set(sizes)) or (sizes and sizes[-1] >= self.grid):
            raise ValueError(f"filter.coarse: grids must increase from >= 2 to below grid={self.grid}, got {sizes}")
        if any(u <= 0 for u in steps) or steps != sorted(set(steps)):
            raise ValueError(f"filter.coarse: env steps must be positive and increase, got {steps}")
        if self.isotropic and self.decoder != "translation":
            raise ValueError("filter.isotropic starts the translation decoder's concave profile: set filter.decoder: translation")
        if self.isotropic and self.latent_dim != 2:
            raise ValueError(f"filter.isotropic spreads hinge directions over a circle: needs filter.latent_dim: 2, got {self.latent_dim}")
        if self.neighbourhood > 0 and self.neighbourhood_until <= 0:
            raise ValueError("filter.neighbourhood shrinks to 0 at filter.neighbourhood_until env steps: set that too")
        return self


class TrainConfig(Strict):
    total_steps: int = Field(100_000, ge=1)
    episodes_per_epoch: int = Field(16, ge=1)  # collected in parallel with batched inference
    initial_episodes: int = Field(32, ge=0)  # random-action episodes before training
    encoder_updates: int = Field(64, ge=0)  # num_training_steps_reconstruction per epoch
    encoder_until: int | None = Field(None, ge=0)  # env steps; from then on no encoder updates (moss, filter)
    policy_updates_frozen: int | None = Field(None, ge=0)  # SAC steps per epoch after encoder_until (default: policy_updates)
    policy_updates: int = Field(256, ge=0)  # num_training_steps_policy per epoch
    buffer_episodes: int = Field(4000, ge=1)
    eval_every: int = Field(10_000, ge=1)  # env steps
    eval_episodes: int = Field(20, ge=1)
    checkpoint_every: int = Field(20_000, ge=1)  # env steps
    threads: int = Field(1, ge=1)


class RunConfig(Strict):
    algorithm: Literal["moss", "oracle", "pearl", "tcl", "cocoa", "focal", "focalpp", "filter"]
    env: EnvConfig
    seed: int = 0
    encoder: EncoderConfig = EncoderConfig()
    pearl: PearlConfig = PearlConfig()
    focal: FocalConfig = FocalConfig()
    filter: FilterConfig = FilterConfig()
    offline: OfflineConfig | None = None  # required by focal / focalpp: they learn from datasets only
    sac: SACConfig = SACConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _offline_needs_data(self) -> RunConfig:
        if self.algorithm in ("focal", "focalpp") and self.offline is None:
            raise ValueError(
                f"algorithm {self.algorithm!r} learns offline: add an `offline:` section with a dataset"
            )
        return self

    @model_validator(mode="after")
    def _freezing_needs_an_encoder_phase(self) -> RunConfig:
        t = self.train
        if t.encoder_until is not None and self.algorithm not in ("moss", "filter"):
            raise ValueError(
                f"train.encoder_until: algorithm {self.algorithm!r} has no separate encoder updates (moss, filter do)"
            )
        if t.policy_updates_frozen is not None and t.encoder_until is None:
            raise ValueError("train.policy_updates_frozen applies after train.encoder_until: set that too")
        return self


class LevelConfig(Strict):
    noise: float = Field(..., ge=0, le=1)  # per-step probability of a uniform random action
    episodes_per_task: int = Field(..., ge=1)


class CollectConfig(Strict):
    """`runtime collect`: offline datasets per split from a behaviour checkpoint (agents/datasets.py)."""

    env: EnvConfig
    policy: str | None = None  # behaviour checkpoint (an oracle or any agent); None = random actions only
    policy_env: str | None = None  # the env `policy` was trained on, when it is not `env.id` (same spaces and
    #                                task-vector meaning, e.g. the dense PointRobot oracle on SparsePointRobot)
    out: str  # directory: <out>/<split>.npz
    splits: list[Literal["train", "test", "ood"]] = ["train", "test"]
    seed: int = 0
    levels: dict[str, LevelConfig]


def load_config(path: str | Path, model: type[M] = RunConfig, **overrides: Any) -> M:  # type: ignore[assignment]
    """Read and validate a YAML config (a run config unless `model` says otherwise); `overrides` are
    dotted keys ("train.total_steps": 1000)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return parse_config(raw, source=str(p), model=model)


def parse_config(raw: dict[str, Any], source: str = "<config>", model: type[M] = RunConfig) -> M:  # type: ignore[assignment]
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None
