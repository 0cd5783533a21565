"""Run configs: pydantic models loaded from YAML. Unknown keys, wrong types and missing files are refused
with a message naming them; the resolved config is stored in every checkpoint."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

#: what a device setting may name (agents/device.py resolves it against the machine)
DEVICE_NAMES = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


class ConfigError(ValueError):
    """A config file that cannot be used (the message names the file and the offending key)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


M = TypeVar("M", bound=BaseModel)


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
    lr: float = Field(3e-4, gt=0)  # lr_encoder = lr_decoder
    decoder_hidden: tuple[int, ...] = (64, 64)
    batch_size: int = Field(64, ge=2)  # sequences per update
    time_steps: int = Field(64, ge=1)  # sequence length
    # what the belief must reconstruct: transitions of its own task segment, or only the next one (the paper)
    decode: Literal["segment", "next"] = "segment"
    decode_samples: int = Field(8, ge=1)  # transitions decoded per step (decode=segment)
    alpha_z: float = 1.0
    alpha_y: float = 1.0
    # std of a random-walk step added to the recurrent prior q(z | c_<t) in the KL term (0: the paper's prior,
    # the previous posterior as it is). A confident belief (std ~0.05) makes the paper's KL charge ~200 nats
    # per unit move of its mean, so after a switch the belief creeps (on Cheetah-Vel-NS it still read the
    # old velocity 10 steps after a switch); a drift of ~1 prices a jump like a fresh start. docs/methods.md
    prior_drift: float = Field(0.0, ge=0)
    state_weight: float = 1.0
    reward_weight: float = 1.0
    contrastive_weight: float = 1.0
    contrastive: bool = True  # the paper skips it on non-stationary training data
    max_grad_norm: float | None = 1.0  # max_grad_norm_vae


class PearlConfig(Strict):
    """PEARL, TCL-PEARL and CoCOA (one section; `algorithm` picks the auxiliary loss: pearl = none, tcl =
    trajectory contrastive loss, cocoa = CoCOA's). The encoder steps with every SAC step (`train.policy_updates`
    per epoch); `train.encoder_updates` (MoSS's and the grid filter's) is not used. See agents/algorithms/pearl.py."""

    latent_dim: int = Field(5, ge=1)  # PEARL latent_size
    encoder_hidden: tuple[int, ...] = (200, 200)  # TCL: 2-layer MLP of 200 units
    encoder_lr: float = Field(3e-4, gt=0)  # PEARL context_lr
    kl_beta: float = Field(0.1, ge=0)  # PEARL kl_lambda: weight of KL(q(z|c) || N(0, I))
    meta_batch: int = Field(16, ge=1)  # training tasks per update; sac.batch_size is split among them
    # transitions per task of the RL context (PEARL embedding_batch_size; tcl and cocoa too)
    context_size: int = Field(64, ge=1)
    vary_context: bool = True  # the RL context of each task keeps a uniform 0..size of its transitions
    sample_z: bool = (
        False  # actor/critic on z ~ q(z|c) (PEARL) instead of the belief (mu, std) (Bayes-adaptive)
    )
    window: int = Field(64, ge=1)  # tcl/cocoa: crop length of the contrastive queries and keys
    aux_batch: int | None = Field(None, ge=2)  # tcl/cocoa: queries per update (default meta_batch); extra
    #                                            trajectories beyond the meta-batch serve as queries/negatives only
    momentum: float = Field(
        0.995, ge=0, lt=1
    )  # key <- m key + (1 - m) query (TCL's "momentum 0.005" is 1 - m)
    temperature: float = Field(1.0, gt=0)  # InfoNCE logits = sim / temperature
    aux_weight: float = Field(1.0, ge=0)  # contrastive loss scale (TCL Table 4)


class FocalConfig(Strict):
    """FOCAL and FOCAL++ (the FOCAL++ paper; Table D.2 names in comments). See agents/algorithms/focal.py."""

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


class GridFilterConfig(Strict):
    """The grid filter (agents/algorithms/gridfilter.py, ours): Bayes' rule over a fixed latent grid."""

    grid: int = Field(16, ge=2)  # points per latent axis: K = grid ** latent_dim
    # reward decoder: "mlp" (any map from grid points to tasks) or "translation" (a task is a target point in
    # a learned linear feature of the transition: points map to targets affinely; agents/parts/grid_filter.py)
    decoder: Literal["mlp", "translation"] = "mlp"
    # translation: start the concave profile as a round cone (hinge directions spread evenly over the circle,
    # 2-D latents) instead of random directions, which can start it as a ridge flat along one direction
    isotropic: bool = False
    latent_dim: int = Field(2, ge=1)
    hidden: int = Field(32, ge=1)  # reward decoder width (mlp: two hidden layers; translation: one per part)
    hazard: float = Field(0.02, gt=0, lt=1)  # prior probability per step that the task switches
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)  # whole episodes per likelihood step
    # acting (collection, evaluation, serving) filters on a grid with refine - 1 extra points between
    # neighbouring training-grid points, so unseen tasks are placed between them; learning stays on `grid`
    refine: int = Field(1, ge=1)
    # the likelihood step's gradient from this many grid points per step, drawn by their share of it (the
    # smoothed posterior), instead of all K: an unbiased estimate at a fraction of the decoder's cost; 0: exact
    grad_samples: int = Field(0, ge=0)
    # re-filter every stored episode with the moved likelihood only every this many epochs (new episodes
    # every epoch): the beliefs SAC reads lag the likelihood by up to N - 1 epochs, for 1/N of the cost
    relabel_every: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _isotropic_needs_a_circle(self) -> GridFilterConfig:
        if self.isotropic and self.decoder != "translation":
            raise ValueError("gridfilter.isotropic starts the translation decoder's concave profile: set gridfilter.decoder: translation")
        if self.isotropic and self.latent_dim != 2:
            raise ValueError(f"gridfilter.isotropic spreads hinge directions over a circle: needs gridfilter.latent_dim: 2, got {self.latent_dim}")
        return self


class TrainConfig(Strict):
    total_steps: int = Field(100_000, ge=1)  # env steps (offline algorithms: gradient steps)
    episodes_per_epoch: int = Field(16, ge=1)  # collected in parallel with batched inference
    initial_episodes: int = Field(32, ge=0)  # random-action episodes before training
    encoder_updates: int = Field(64, ge=0)  # encoder (likelihood) steps per epoch: moss, gridfilter
    policy_updates: int = Field(256, ge=0)  # SAC steps per epoch (pearl family and focal: encoder steps too)
    buffer_episodes: int = Field(4000, ge=1)
    eval_every: int = Field(10_000, ge=1)  # env steps
    eval_episodes: int = Field(20, ge=1)
    checkpoint_every: int = Field(20_000, ge=1)  # env steps
    threads: int = Field(1, ge=1)
    # where the networks, the optimisers and the replay buffer live: auto = CUDA when present, else the CPU.
    # Envs always step on the CPU; checkpoints hold CPU tensors whichever device trained them
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not DEVICE_NAMES.fullmatch(v):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N (N a device index), got {v!r}")
        return v


class RunBase(Strict):
    """What every run config holds; each algorithm's model adds its own section (`RunConfig`)."""

    algorithm: str
    env: EnvConfig
    seed: int = 0
    sac: SACConfig = SACConfig()
    train: TrainConfig = TrainConfig()


class MoSSRun(RunBase):
    algorithm: Literal["moss"]
    encoder: EncoderConfig = EncoderConfig()


class OracleRun(RunBase):
    algorithm: Literal["oracle"]


class PearlRun(RunBase):
    algorithm: Literal["pearl", "tcl", "cocoa"]
    pearl: PearlConfig = PearlConfig()


class FocalRun(RunBase):
    algorithm: Literal["focal", "focalpp"]
    focal: FocalConfig = FocalConfig()
    offline: OfflineConfig  # they learn from datasets only


class GridFilterRun(RunBase):
    algorithm: Literal["gridfilter"]
    gridfilter: GridFilterConfig = GridFilterConfig()


#: a run config: one model per algorithm, picked by `algorithm`
RunConfig = Annotated[MoSSRun | OracleRun | PearlRun | FocalRun | GridFilterRun, Field(discriminator="algorithm")]
RUN_MODELS: tuple[type[RunBase], ...] = (MoSSRun, OracleRun, PearlRun, FocalRun, GridFilterRun)
_RUN_ADAPTER: TypeAdapter[RunBase] = TypeAdapter(RunConfig)

#: each algorithm's own section, by algorithm name; OFFLINE: the algorithms that learn from datasets only
SECTIONS: dict[str, str | None] = {}
OFFLINE: set[str] = set()
for _m in RUN_MODELS:
    _own = [f for f in _m.model_fields if f not in RunBase.model_fields and f != "offline"]
    for _name in get_args(_m.model_fields["algorithm"].annotation):
        SECTIONS[_name] = _own[0] if _own else None
        if "offline" in _m.model_fields:
            OFFLINE.add(_name)

#: options that no longer exist, by dotted key, with the value at which each did nothing (a checkpoint's
#: stored config or policy spec that holds one at that value still loads; any other value is refused)
REMOVED: dict[str, Any] = {
    # the earlier distance-metric loss's parameters, at its defaults (FOCAL's own form replaced that loss)
    "focal.metric_beta": 1.0,
    "focal.metric_power": 2.0,
    "focal.metric_eps": 0.1,
    "encoder.policy_input": "belief",
    "encoder.head_hidden": [],
    "encoder.embed_hidden": [],
    "encoder.normalize": False,
    "encoder.cell": "gru",
    "encoder.reward_decoder": "mlp",
    "encoder.cluster_weight": 0.0,
    "encoder.agreement_weight": 0.0,
    "encoder.task_prediction_weight": 0.0,
    "gridfilter.jitter": False,
    "gridfilter.mode": False,
    "gridfilter.min_sigma": 0.0,
    "gridfilter.probes": 0,
    "gridfilter.coarse": [],
    "gridfilter.neighbourhood": 0.0,
    "gridfilter.neighbourhood_until": 0,
    "train.encoder_until": None,
    "train.policy_updates_frozen": None,
    "pearl.rl_context": "task",
}
#: values that no longer exist, by dotted key: (the removed values, what a loaded checkpoint's config gets)
REMOVED_VALUES: dict[str, tuple[tuple[Any, ...], Any]] = {"encoder.decode": (("task",), "segment")}
RENAMED_ALGORITHMS = {"filter": "gridfilter"}


def did_nothing(value: Any, off: Any) -> bool:
    """Whether a removed option's stored value is the one at which it had no effect (lists and tuples alike)."""
    return value == off or (isinstance(off, list) and value in ([], ()))


def _present(raw: dict[str, Any], table: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(dotted key, its section's mapping, key) for every key of `table` that `raw` holds."""
    found = []
    for dotted in table:
        section, key = dotted.split(".")
        node = raw.get(section)
        if isinstance(node, dict) and key in node:
            found.append((dotted, node, key))
    return found


def _foreign_sections(algorithm: Any) -> list[str]:
    """The sections a config of `algorithm` may not hold: every other algorithm's (and `offline` unless it learns offline)."""
    others = {s for s in SECTIONS.values() if s} | {"offline"}
    return sorted(others - {SECTIONS.get(algorithm)} - ({"offline"} if algorithm in OFFLINE else set()))


def migrate_stored_config(raw: dict[str, Any], source: str, resuming: bool = True) -> dict[str, Any]:
    """A config stored by an older version (in a checkpoint or a run's config.yaml) in today's form: the
    old algorithm name `filter` and its section renamed, the sections of other algorithms (once stored
    in every config) dropped, and removed options (and removed values) dropped where they did nothing.
    Resuming, one that did something is refused: the run used a training feature that no longer exists.
    Not resuming (a checkpoint loaded to act, whose acting settings `agents.checkpoint` checks), such
    training-only settings are dropped too: they do not change what the policy does."""
    _check_algorithm_type(raw, source)
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    old = raw.get("algorithm")
    if old in RENAMED_ALGORITHMS:
        raw["algorithm"] = RENAMED_ALGORITHMS[old]
        if old in raw:
            raw[RENAMED_ALGORITHMS[old]] = raw.pop(old)
    for name in RENAMED_ALGORITHMS:  # version 1 stored the old-named section in every config
        raw.pop(name, None)
    for section in _foreign_sections(raw.get("algorithm")):
        if section != "offline" or raw.get("offline") is None:  # an offline section set by hand is refused later
            raw.pop(section, None)
    for dotted, node, key in _present(raw, REMOVED):
        value = node.pop(key)
        if resuming and not did_nothing(value, REMOVED[dotted]):
            raise ConfigError(f"{source}: {dotted}: option removed; this run set it to {value!r}, which this version cannot reproduce")
    for dotted, node, key in _present(raw, REMOVED_VALUES):
        values, today = REMOVED_VALUES[dotted]
        if node[key] in values:
            if resuming:
                raise ConfigError(f"{source}: {dotted}: {node[key]!r} is no longer offered; this run used it, which this version cannot reproduce")
            node[key] = today
    return raw


def _check_algorithm_type(raw: dict[str, Any], source: str) -> None:
    if not isinstance(raw.get("algorithm"), str):
        raise ConfigError(f"{source}: algorithm: must be one of {', '.join(SECTIONS)}, got {raw.get('algorithm')!r}")


def check_removed(raw: dict[str, Any], source: str) -> None:
    """Refuse a config file that names a removed option, a renamed algorithm or another algorithm's section."""
    _check_algorithm_type(raw, source)
    algorithm = raw.get("algorithm")
    if algorithm in RENAMED_ALGORITHMS:
        new = RENAMED_ALGORITHMS[algorithm]
        raise ConfigError(f"{source}: algorithm {algorithm!r} is now {new!r} (and its section `{algorithm}:` is `{new}:`)")
    for name, new in RENAMED_ALGORITHMS.items():
        if name in raw:
            raise ConfigError(f"{source}: {name}: the section is now `{new}:`")
    for dotted, _, _ in _present(raw, REMOVED):
        raise ConfigError(f"{source}: {dotted}: option removed")
    for dotted, node, key in _present(raw, REMOVED_VALUES):
        values, today = REMOVED_VALUES[dotted]
        if node[key] in values:
            raise ConfigError(f"{source}: {dotted}: {node[key]!r} is no longer offered (today: {today!r} or the others its field lists)")
    for section in _foreign_sections(algorithm):
        if section in raw:
            users = sorted(a for a, s in SECTIONS.items() if s == section) or sorted(OFFLINE)
            raise ConfigError(f"{source}: {section}: a section of {', '.join(users)}, not of algorithm {algorithm!r}")


class LevelConfig(Strict):
    noise: float = Field(..., ge=0, le=1)  # per-step probability of a uniform random action
    episodes_per_task: int = Field(..., ge=1)


class PerTaskBehaviourConfig(Strict):
    """FOCAL's data: one SAC agent per task, recorded along its training (agents/training/behaviour.py)."""

    learn_env_kwargs: dict[str, Any] = {}  # env kwargs the agents learn under (e.g. a dense reward)
    checkpoints: list[int] = Field(..., min_length=1)  # env steps of training at which each agent is recorded
    episodes_per_checkpoint: int = Field(..., ge=1)  # stochastic episodes per task and checkpoint
    episodes_per_epoch: int = Field(10, ge=1)  # episodes between rounds of SAC steps
    initial_steps: int = Field(200, ge=0)  # random-action env steps before the first SAC step
    updates_per_step: float = Field(1.0, gt=0)  # SAC steps per env step
    sac: SACConfig = SACConfig()

    @field_validator("checkpoints")
    @classmethod
    def _distinct(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"must be distinct env-step counts >= 0, got {v}")
        return sorted(v)


class CollectConfig(Strict):
    """`runtime collect`: offline datasets per split, either from a behaviour checkpoint at quality levels
    (`policy` + `levels`, agents/training/datasets.py) or from one SAC agent per task (`per_task`)."""

    env: EnvConfig
    policy: str | None = None  # behaviour checkpoint (an oracle or any agent); None = random actions only
    policy_env: str | None = None  # the env `policy` was trained on, when it is not `env.id` (same spaces and
    #                                task-vector meaning, e.g. the dense PointRobot oracle on SparsePointRobot)
    out: str  # directory: <out>/<split>.npz
    splits: list[Literal["train", "test", "ood"]] = ["train", "test"]
    seed: int = 0
    levels: dict[str, LevelConfig] | None = None
    per_task: PerTaskBehaviourConfig | None = None

    @model_validator(mode="after")
    def _one_recipe(self) -> CollectConfig:
        if (self.levels is None) == (self.per_task is None):
            raise ValueError("give exactly one of levels (with an optional policy) and per_task")
        if self.per_task is not None and (self.policy is not None or self.policy_env is not None):
            raise ValueError("per_task trains its own behaviour policies: policy and policy_env do not apply")
        return self


def load_config(path: str | Path, model: type[M] | None = None, **overrides: Any) -> Any:
    """Read and validate a YAML config (a run config, `RunConfig`, unless `model` says otherwise);
    `overrides` are dotted keys ("train.total_steps": 1000)."""
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


def parse_config(raw: dict[str, Any], source: str = "<config>", model: type[M] | None = None, stored: bool = False) -> Any:
    """Validate a mapping as `model` (default: a run config, its model picked by `algorithm`). `stored`: the
    config comes from a checkpoint or a run directory and is first brought to today's form
    (`migrate_stored_config`); a config a user writes that names a removed option is refused."""
    if model is not None:
        validate: Any = model.model_validate
    else:
        if stored:
            raw = migrate_stored_config(raw, source)
        else:
            check_removed(raw, source)
        if raw.get("algorithm") not in SECTIONS:
            raise ConfigError(f"{source}: algorithm: must be one of {', '.join(SECTIONS)}, got {raw.get('algorithm')!r}")
        validate = _RUN_ADAPTER.validate_python
    try:
        return validate(raw)
    except ValidationError as e:
        tag = raw.get("algorithm") if model is None else None

        def where(loc: tuple) -> str:
            loc = loc[1:] if loc and loc[0] == tag else loc  # the union's branch name is not a key
            return ".".join(str(x) for x in loc) or "<root>"

        problems = "; ".join(f"{where(err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{source}: {problems}") from None
