"""The learning benchmark: agents trained on synthetic songs, scored on held-out songs.

One command (``deepmixing benchmark quality``, :mod:`benchmarks.bench_quality`) makes a
synthetic dataset with known gain automation (by default sampled-instrument songs mixed by the
model of practice in docs/mixing_model.md; ``kind="procedural"`` for the fast wavetable
songs), prepares it into a cache, splits it into
training and held-out songs, and fills one table (the product's evaluation, on the held-out
songs only) with:

- the baselines: equal gains, loudness-equalized gains, the per-chunk oracle, the static oracle;
- agents trained on the training songs: behaviour cloning from oracle demonstrations (in RLlib's
  offline format), the same with causal level features only (an ablation: no whole-stem
  levels), then through Ray Tune: BC followed by PPO fine-tuning, PPO from scratch, vanilla
  policy gradient, and the report-size network (raw chunks, k = r = 100, W = 16) under PPO.

``gap_closed`` is the share of the distance between the equal-gain baseline and the oracle
(mean MFCC distance) that a policy closes. The pieces (split, demonstrations, agent
experiments, scoring, the results page) are functions here so tests can run them on tiny data.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.quality_prior import (
    PRIOR_AGENTS,
    PRIOR_ENV_RUNNERS,
    PRIOR_LABELS,
    PRIOR_TRAINING,
    PRIORS,
    agent_model,
    prior_model_config,
)
from mixing_env.baselines import BASELINES
from mixing_env.errors import ConfigError

__all__ = [
    "BASELINE_ROWS",
    "PRIORS",
    "QualitySetup",
    "Split",
    "agent_experiments",
    "make_split",
    "record_oracle_demonstrations",
    "results_markdown",
    "run_benchmark",
    "score_policies",
]

BASELINE_ROWS = tuple(BASELINES)
"""Baseline policies scored in every table: the one registry, mixing_env.baselines.BASELINES
(instrument_balance is fitted on the training songs first)."""


DEFAULT_TRACKS = {"sampled": (6, 11), "procedural": (8, 24)}
"""Stems per song for each kind of song (sampled songs take 4 to 19)."""


@dataclass(frozen=True)
class QualitySetup:
    """What the benchmark trains and scores; the defaults are the 2-core, <= 60 min setup."""

    n_train: int = 32
    """Training songs."""
    n_heldout: int = 8
    """Held-out songs: never seen in training or in demonstrations."""
    seconds: float = 6.0
    """Length of each synthetic song."""
    n_tracks: tuple[int, int] | None = None
    """Stems per song, drawn per song (None: the kind's default, see ``DEFAULT_TRACKS``)."""
    kind: str = "sampled"
    """Which songs: ``sampled`` (General MIDI instruments, mixing model of practice) or
    ``procedural`` (the fast wavetable songs of the earlier tables)."""
    master_bus: float = 0.0
    """Sampled songs: chance that a song's reference goes through a master bus."""
    masking_db: float = 0.0
    """Sampled songs: the mixing model's content term, dB of lift per unit of masking
    (docs/mixing_model.md); 0 leaves it out."""
    own_sd_scale: float = 1.0
    """Sampled songs: multiplies the spread of the random per-stem level offsets."""
    group_sd_scale: float = 1.0
    """Sampled songs: multiplies the spread of the random per-group level offsets."""
    seed: int = 7
    """Dataset seed (songs) and training seed."""
    episode_chunks: int = 128
    """Random window per training episode (~1.5 s)."""
    n_track_features: int = 16
    """Log-mel bands per track in the observation (plus 3 level features)."""
    stem_spectrum: bool = False
    """Give the agents each stem's long-term spectrum too (the env's
    ``stem_spectrum_features``: n_track_features more values per track)."""
    demo_episodes_per_song: int = 8
    """Oracle demonstration episodes (random windows) per training song."""
    minutes: dict[str, float] = field(
        default_factory=lambda: {"bc": 10.0, "bc_causal": 10.0, "bc_ppo": 6.0, "ppo": 8.0,
                                 "pg": 4.0, "paper": 3.0}
    )
    """Wall-clock budget per agent, minutes (Tune stops each trial at its budget)."""
    agents: tuple[str, ...] = ("bc", "bc_causal", "bc_ppo", "ppo", "pg", "paper")
    """Which agent rows to train."""
    prior: str | None = None
    """None, or one of ``PRIORS``: the agents of ``PRIOR_AGENTS`` start at that baseline and
    learn a correction (their RL settings then follow ``PRIOR_TRAINING``)."""
    model: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_size": 48, "mix_hidden_size": 5, "attention_dim": 32, "embed_dim": 16,
            "max_seq_len": 32, "input_norm": "db", "log_rms_feature": False,
            "concentration_scale": 50.0,
        }
    )
    """The reduced attention-LSTM (report's l = 5; smaller k, r, W for 2 cores)."""

    def __post_init__(self) -> None:
        if self.kind not in DEFAULT_TRACKS:
            raise ConfigError(f"kind must be one of {sorted(DEFAULT_TRACKS)}, got {self.kind!r}")
        if self.n_tracks is None:  # frozen: set the kind's default once
            object.__setattr__(self, "n_tracks", DEFAULT_TRACKS[self.kind])
        for name in ("n_train", "n_heldout", "episode_chunks", "n_track_features",
                     "demo_episodes_per_song"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {name}={value!r}")
        from mixing_env.songs.sampled.mixing_model import MIX_OPTION_DEFAULTS, check_mix_options

        options = {name: getattr(self, name) for name in MIX_OPTION_DEFAULTS}
        check_mix_options(**options)
        if self.kind != "sampled" and options != MIX_OPTION_DEFAULTS:
            raise ConfigError(f"masking_db, own_sd_scale and group_sd_scale set the sampled "
                              f"songs' mixing model; kind={self.kind!r} has none")
        unknown = sorted(set(self.agents) - set(AGENTS))
        if unknown:
            raise ConfigError(f"unknown agent(s) {unknown}; expected some of {sorted(AGENTS)}")
        if self.prior is not None and self.prior not in PRIORS:
            raise ConfigError(f"prior must be one of {PRIORS} or None, got {self.prior!r}")
        if "bc_ppo" in self.agents and "bc" not in self.agents:
            raise ConfigError("agent bc_ppo fine-tunes the bc agent: add 'bc' to the agents")


@dataclass(frozen=True)
class Split:
    """A prepared dataset cut into training and held-out songs (same slot layout)."""

    cache_dir: str
    train: tuple[str, ...]
    heldout: tuple[str, ...]

    def env(self, setup: QualitySetup, *, heldout: bool = False, **overrides: Any) -> dict:
        """The MixingEnv config of one side of the split (logmel + level observations).

        Each track carries its causal level statistics and its whole-stem peak and mean
        level: a finished multitrack is mixed with every stem known from the start.
        """
        cfg = {
            "dataset_dir": self.cache_dir,
            "songs": list(self.heldout if heldout else self.train),
            "episode_chunks": None if heldout else setup.episode_chunks,
            "obs_features": "logmel",
            "n_track_features": setup.n_track_features,
            "level_features": True,
            "stem_level_features": True,
        }
        if setup.stem_spectrum:
            cfg["stem_spectrum_features"] = True
        if setup.prior is not None:  # the prior reads the stem's BS.1770 loudness
            from rl_models.prior import PRIOR_ENV_CONFIG

            cfg |= PRIOR_ENV_CONFIG
        return {**cfg, **overrides}


def make_split(root: str | Path, setup: QualitySetup, *, progress: bool = False) -> Split:
    """Writes the songs of ``setup.kind``, prepares them into one cache, splits them by name.

    One cache (not two) so the split is one prepared dataset; the held-out songs are the last
    ``n_heldout`` (song k is the same whatever the dataset size, for both kinds).
    """
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.songs.procedural import make_synthetic_dataset
    from mixing_env.songs.sampled import make_sampled_dataset

    root = Path(root)
    n = setup.n_train + setup.n_heldout
    common = {"n_songs": n, "seconds": setup.seconds, "n_tracks": tuple(setup.n_tracks),
              "seed": setup.seed}
    if setup.kind == "sampled":
        make_sampled_dataset(root / "songs", master_bus=setup.master_bus,
                             masking_db=setup.masking_db, own_sd_scale=setup.own_sd_scale,
                             group_sd_scale=setup.group_sd_scale, **common)
    else:
        make_synthetic_dataset(root / "songs", **common)
    # rebuild: the cache holds the songs just written, whatever an earlier setup left there.
    dataset = prepare_dataset(root / "songs", root / "cache", progress=progress, rebuild=True)
    names = sorted(dataset.names)
    if len(names) != n:
        raise ConfigError(f"expected {n} prepared songs in {root / 'cache'}, got {len(names)}")
    return Split(str((root / "cache").resolve()), tuple(names[: setup.n_train]),
                 tuple(names[setup.n_train :]))


def record_oracle_demonstrations(split: Split, setup: QualitySetup, out_dir: str | Path,
                                 **env_overrides: Any) -> Path:
    """Oracle demonstrations of the training songs, in RLlib's offline episode format.

    ``env_overrides`` change the observation recorded (e.g. ``stem_level_features=False``).
    """
    from rl_models.app.demonstrations import record_episodes, write_demonstrations

    episodes = record_episodes(split.env(setup, **env_overrides), policy="oracle",
                               episodes_per_song=setup.demo_episodes_per_song, seed=setup.seed)
    return write_demonstrations(episodes, out_dir)


def _experiment(name: str, algorithm: str, env: dict, *, model: dict, minutes: float,
                seed: int, storage: str, **sections: Any) -> dict:
    from rl_models.app.experiment import DEFAULTS, merge_trees

    exp = merge_trees(DEFAULTS, {
        "name": name, "algorithm": algorithm, "env": env, "model": model,
        "checkpoint": {"frequency": 0, "num_to_keep": 1},
        "storage_path": storage, "seed": seed,
    })
    exp = merge_trees(exp, sections)
    exp["stop"] = {"time_total_s": int(minutes * 60)}  # a wall-clock budget, nothing else
    return exp


_PPO_TRAINING = {"lr": 3e-4, "gamma": 0.5, "lambda_": 0.9, "train_batch_size_per_learner": 1024,
                 "minibatch_size": 256, "num_epochs": 4, "entropy_coeff": 0.0}
"""PPO settings: the reward is mostly immediate (a chunk's mix), so a short horizon."""


def agent_experiments(split: Split, setup: QualitySetup, *, storage: str | Path,
                      prior: dict | None = None) -> dict[str, Callable[[dict], dict]]:
    """Experiment dicts of the agents trained through Ray Tune (all but ``bc``).

    ``bc`` is trained in-process by :func:`rl_models.app.behaviour_cloning.train_behaviour_cloning`
    on the same demonstrations RLlib's BC reads (RLlib's offline pipeline needs about a minute
    per update here); BC-then-PPO starts from its checkpoint.

    Args:
        split: The dataset split.
        setup: The benchmark setup.
        storage: Where Tune writes the runs.
        prior: :func:`prior_model_config` (None or {}: no prior).

    Returns:
        Agent name -> function of the checkpoints trained so far (name -> path) giving the
        experiment dict to run through :func:`rl_models.app.train.run_experiment`.
    """
    env = split.env(setup)
    storage = str(Path(storage).resolve())
    prior = dict(prior or {})
    minutes = setup.minutes

    def rl(name: str, training: dict) -> dict:
        """The model, training and env-runner sections of an RL agent."""
        if prior and name in PRIOR_AGENTS:
            return {"model": agent_model(name, setup, prior), "training": PRIOR_TRAINING[name],
                    "env_runners": PRIOR_ENV_RUNNERS}
        return {"model": dict(setup.model), "training": training}

    def bc_ppo(done: dict) -> dict:
        if "bc" not in done:
            raise ConfigError("bc_ppo fine-tunes the bc agent: train 'bc' first")
        return _experiment("quality_bc_ppo", "PPO", env, minutes=minutes["bc_ppo"],
                           seed=setup.seed, storage=storage, init_module_from=done["bc"],
                           **rl("bc_ppo", {**_PPO_TRAINING, "lr": 5e-5}))

    def ppo(_: dict) -> dict:
        return _experiment("quality_ppo", "PPO", env, minutes=minutes["ppo"],
                           seed=setup.seed, storage=storage, **rl("ppo", _PPO_TRAINING))

    def pg(_: dict) -> dict:
        return _experiment("quality_pg", "PG", env, minutes=minutes["pg"],
                           seed=setup.seed, storage=storage,
                           **rl("pg", {"lr": 3e-4, "gamma": 0.5,
                                       "train_batch_size_per_learner": 1024}))

    def paper(_: dict) -> dict:
        # The report's network (Appendix 2) on raw 500-sample chunks: k = r = 100, l = 5, W = 16.
        paper_model = {"hidden_size": 100, "mix_hidden_size": 5, "attention_dim": 100,
                       "embed_dim": 16, "max_seq_len": 16, "input_norm": "mu_law"}
        paper_env = split.env(setup, obs_features="raw", level_features=False,
                              stem_level_features=False, stem_loudness_feature=False)
        return _experiment("quality_paper", "PPO", paper_env, model=paper_model,
                           minutes=minutes["paper"], seed=setup.seed, storage=storage,
                           training={**_PPO_TRAINING, "train_batch_size_per_learner": 256,
                                     "minibatch_size": 64, "num_epochs": 1})

    table = {"bc_ppo": bc_ppo, "ppo": ppo, "pg": pg, "paper": paper}
    return {name: table[name] for name in setup.agents if name in table}


AGENTS = ("bc", "bc_causal", "bc_ppo", "ppo", "pg", "paper")
"""Agent rows in training order (bc_ppo starts from bc)."""

IN_PROCESS_BC = {"bc": {}, "bc_causal": {"stem_level_features": False,
                                         "stem_loudness_feature": False}}
"""Agents trained by the in-process BC trainer -> their env overrides (bc_causal: an ablation
that sees only the causal level statistics, as an online mixer would)."""

AGENT_LABELS = {
    "bc": "BC (oracle demos)", "bc_causal": "BC, causal levels only",
    "bc_ppo": "BC + PPO fine-tune", "ppo": "PPO from scratch",
    "pg": "vanilla PG", "paper": "report-size net, PPO",
}


def score_policies(policies: dict[str, str], split: Split, setup: QualitySetup,
                   out_dir: str | Path) -> list[dict]:
    """Scores baselines and checkpoints on the held-out songs with the product's evaluation.

    Args:
        policies: Row label -> baseline name or checkpoint path.
        split: The dataset split (held-out songs are scored).
        setup: The benchmark setup.
        out_dir: Where the evaluation tables and plots go.

    Returns:
        One MEAN row per policy, with ``label`` and ``gap_closed``.
    """
    from rl_models.app.evaluate import evaluate

    specs = list(policies.values())
    rows = evaluate(specs, env_config={"dataset_dir": split.cache_dir,
                                       "songs": list(split.heldout)},
                    out_dir=out_dir, plots=True, progress=False)
    # evaluate() names a row by its spec (a checkpoint path, or the baseline's name).
    label_of = {spec: label for label, spec in policies.items()}
    means = [{"label": label_of.get(r["policy"], r["policy"]), **r}
             for r in rows if r["song"] == "MEAN"]
    return means


def results_markdown(rows: list[dict], *, setup: QualitySetup, command: str,
                     wall_s: dict[str, float], curves_png: str | None) -> str:
    """The results page: table, setup, commands, seeds, wall times."""

    def f(v: Any, digits: int = 2) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

    lines = [
        "| policy | MFCC dist | reward | gap closed | balance gap closed | gain err median dB "
        "| MR-STFT | SI-SDR dB | LUFS diff | train wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {f(r['mfcc_distance'])} | {f(r['reward'], 3)} | "
            f"{f(r.get('gap_closed'))} | {f(r.get('balance_gap_closed'))} | "
            f"{f(r['gain_err_median_db'])} | {f(r['mrstft'])} | "
            f"{f(r['si_sdr_db'], 1)} | {f(r['lufs_diff'])} | "
            f"{f(wall_s.get(r['label']), 0)} |"
        )
    setup_json = json.dumps(asdict(setup), indent=1)
    text = [
        "## Table (held-out songs)", "", *lines, "",
        f"Command: `{command}`", "",
        "Setup (seeds, sizes, budgets):", "", "```json", setup_json, "```", "",
    ]
    if curves_png:
        text += [f"![learning curves]({curves_png})", ""]
    return "\n".join(text)


def run_benchmark(out: str | Path, setup: QualitySetup, *, command: str = "",
                  log: Callable[[str], None] = print) -> dict:
    """Runs the whole benchmark into ``out``; returns the rows and wall times.

    Writes ``out/results.json``, ``out/results.md``, ``out/learning_curves.png`` and the
    evaluation tables and plots under ``out/evaluation``.
    """
    from rl_models.app.behaviour_cloning import train_behaviour_cloning
    from rl_models.app.plots import plot_learning_curves, read_learning_curve
    from rl_models.app.train import run_experiment

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    split = make_split(out / "data", setup)
    log(f"split: {len(split.train)} training, {len(split.heldout)} held-out songs "
        f"({time.time() - t0:.0f} s)")
    from mixing_env.balance import fit_dataset_balance

    # Fitted first: the baseline row, and the agents' prior when setup.prior is set.
    table = fit_dataset_balance(split.cache_dir, songs=split.train, out=out / "balance.json")
    prior = prior_model_config(split, setup, table)
    experiments = agent_experiments(split, setup, storage=out / "runs", prior=prior)
    labels = {**AGENT_LABELS, **(PRIOR_LABELS if setup.prior else {})}
    checkpoints: dict[str, str] = {}
    wall: dict[str, float] = {}
    curves: dict[str, list[dict]] = {}
    for name in AGENTS:
        if name not in setup.agents:
            continue
        label = labels[name]
        t = time.time()
        if name in IN_PROCESS_BC:
            env_config = split.env(setup, **IN_PROCESS_BC[name])
            demos = record_oracle_demonstrations(split, setup, out / "demonstrations" / name,
                                                 **IN_PROCESS_BC[name])
            log(f"oracle demonstrations: {demos} ({time.time() - t:.0f} s)")
            bc = train_behaviour_cloning(
                demos, env_config=env_config, model=agent_model(name, setup, prior),
                out_dir=out / "runs" / name,
                minutes=setup.minutes[name], seed=setup.seed, log=log)
            checkpoints[name] = bc["checkpoint"]
            curves[name] = [{"iteration": u, "time_s": s, "policy_loss": loss,
                             "return_mean": None, "env_steps": None} for u, s, loss in bc["curve"]]
        else:
            results = run_experiment(copy.deepcopy(experiments[name](checkpoints)), verbose=0)
            best = results[0]
            checkpoints[name] = best.checkpoint.path
            curves[name] = read_learning_curve(Path(best.path) / "result.json")
        wall[label] = time.time() - t
        log(f"{label}: {len(curves[name])} curve points in {wall[label]:.0f} s")
    policies = {b: f"{b}={table}" if b == "instrument_balance" else b for b in BASELINE_ROWS}
    policies |= {labels[n]: p for n, p in checkpoints.items()}
    rows = score_policies(policies, split, setup, out / "evaluation")
    png = plot_learning_curves(curves, out / "learning_curves.png", labels=labels,
                               loss_curves=tuple(IN_PROCESS_BC)) if curves else None
    page = results_markdown(rows, setup=setup, command=command, wall_s=wall,
                            curves_png=png.name if png else None)
    (out / "results.md").write_text(page)
    payload = {"rows": rows, "wall_s": wall, "setup": asdict(setup), "curves": curves,
               "total_wall_s": time.time() - t0}
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    log(page)
    return payload
