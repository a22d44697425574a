"""The whole job in minutes: ``deepmixing demo`` (and ``make demo``).

Held-out songs written by ``synth`` and prepared -> an agent that learns the engineer from a
stream of new songs (behaviour cloning of the engineer's decisions, then PPO through Ray Tune,
the quickstart experiment) -> evaluation against the baselines on the held-out songs -> a
mixed WAV of one held-out song.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]

_TABLE_SONGS = 16  # training-stream songs the instrument_balance row is fitted on
_ROWS = ("equal", "loudness", "instrument_balance", "bound", "oracle")
DEMO_IMITATION = 10.0
"""The demo's DAPG weight: the learning table's BC + PPO weight (docs/results.md)."""
_DEMO_PPO_LR = 3e-4  # the learning table's BC + PPO rate: a smaller step than from scratch


def run_demo(out: str | Path, *, n_songs: int = 4, seconds: float = 8.0, seed: int = 0,
             bc_updates: int = 2400, bc_minutes: float = 10.0, iterations: int = 12,
             imitation: float = DEMO_IMITATION, overrides: Sequence[str] = (),
             progress: bool = True, num_cpus: int | None = None, address: str | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs the demo into ``out`` and returns where everything went.

    Args:
        out: Output folder (songs/, cache/, runs/, evaluation/, mix/).
        n_songs: Held-out songs (the agent trains on songs of its own stream, never these).
        seconds: Length of every song.
        seed: Seed of the songs and the training.
        bc_updates: Behaviour cloning's updates, its learning rate decaying with them: the
            same clone on every machine (a wall-clock budget cloned 1,672-3,244 updates
            in the runs we timed, and the clone's score moved with it).
        bc_minutes: A cap on behaviour cloning's wall-clock time, minutes (a slow machine
            stops there with fewer updates).
        iterations: PPO iterations after it (the quickstart experiment).
        imitation: Weight of behaviour cloning's loss kept in PPO's (DAPG, as the learning
            table's BC + PPO; 0: plain PPO, which drifted from the clone: one demo fell from
            its clone's score to 0.49 of the gap, below instrument_balance's 0.55).
        overrides: ``KEY.PATH=VALUE`` overrides of quickstart values.
        progress: Show progress bars.
        num_cpus: CPUs for the local Ray (None: all local cores).
        address: A running Ray cluster to join instead.
        log: Where progress lines go.

    Returns:
        Paths of the songs, cache, trial, checkpoint, evaluation table and mix outputs, the
        table's rows and the seconds it took.
    """
    from mixing_env.balance import fit_instrument_balance
    from mixing_env.baselines import BALANCE_FILE
    from mixing_env.data.prepare import prepare_dataset
    from mixing_env.errors import ConfigError
    from mixing_env.songs.sampled import make_sampled_dataset
    from mixing_env.songs.stream import SongStream, StreamConfig
    from rl_models.app.behaviour_cloning import StreamDemonstrations, train_behaviour_cloning
    from rl_models.app.evaluate import evaluate, format_table
    from rl_models.app.experiment import load_experiment
    from rl_models.app.mix import mix_song
    from rl_models.app.train import check_experiment, init_ray, run_experiment, summarize_results

    if not bc_minutes > 0 or iterations < 1:
        raise ConfigError(f"bc_minutes must be > 0 and iterations >= 1, got {bc_minutes!r} "
                          f"and {iterations!r}")
    if isinstance(bc_updates, bool) or not isinstance(bc_updates, int) or bc_updates < 1:
        raise ConfigError(f"bc_updates must be an int >= 1, got {bc_updates!r}")
    if isinstance(imitation, bool) or not isinstance(imitation, int | float) or not (
            imitation >= 0):
        raise ConfigError(f"imitation must be a number >= 0, got {imitation!r}")
    out = Path(out).resolve()
    started = time.time()
    experiment = load_experiment("quickstart", overrides=[
        f"env.generated.seed={seed}", f"env.generated.seconds={seconds}",
        f"evaluation.env.dataset_dir={out / 'cache'}", f"stop.training_iteration={iterations}",
        f"storage_path={out / 'runs'}", "name=demo", "evaluation.interval=4",
        "checkpoint.frequency=0", f"training.lr={_DEMO_PPO_LR}", *overrides])
    env, model = experiment["env"], experiment["model"]

    log(f"[1/5] {n_songs} held-out songs (the engineer's mixes) -> {out / 'songs'}")
    make_sampled_dataset(out / "songs", n_songs=n_songs, seconds=seconds, seed=seed)
    # rebuild: the cache holds the songs just written, whatever an earlier demo left there.
    ds = prepare_dataset(out / "songs", out / "cache", progress=progress, rebuild=True)
    held_out = list(ds.names)
    stream = SongStream(StreamConfig.from_dict(env["generated"]), stream=1)
    fit_instrument_balance(stream.next_song() for _ in range(_TABLE_SONGS)).write(
        out / "cache" / BALANCE_FILE)  # the field's baseline, fitted on training songs

    log(f"[2/5] behaviour cloning of the engineer on new songs, {bc_updates} updates")
    bc = train_behaviour_cloning(StreamDemonstrations(env, seed=seed), env_config=env,
                                 model=model, out_dir=out / "runs" / "bc",
                                 minutes=bc_minutes, max_updates=bc_updates, seed=seed, log=log,
                                 log_every_s=30)
    log(f"      {bc['updates']} updates on {bc['songs']} songs")

    log(f"[3/5] PPO (quickstart) from it through Ray Tune, {iterations} iterations"
        + (f", keeping the clone's loss at weight {imitation:g}" if imitation else ""))
    experiment["init_module_from"] = bc["checkpoint"]
    if imitation:  # DAPG: behaviour cloning's loss on the engineer's gains stays in PPO's
        learner = experiment.setdefault("resources", {}).setdefault("learner_config_dict", {})
        learner["demonstrations"] = {"coeff": float(imitation), "env": env, "seed": seed,
                                     "loss": "dirichlet"}
    check_experiment(experiment)
    init_ray(num_cpus=num_cpus, address=address)
    results = run_experiment(experiment, verbose=0, checked=True)
    for line in summarize_results(results):
        log(line)
    best = results[0]
    checkpoint = best.checkpoint.path

    log(f"[4/5] evaluate on the held-out songs {held_out} against the baselines")
    rows = evaluate([checkpoint, *_ROWS], env_config={"dataset_dir": str(out / "cache")},
                    out_dir=out / "evaluation", progress=progress)
    log(format_table(rows, means_only=True))
    means = {r["policy"]: r for r in rows if r["song"] == "MEAN"}
    agent = next(r for name, r in means.items() if name not in _ROWS)
    log(f"the agent closes {agent['gap_closed']:.0%} of the gap from equal gains to the oracle "
        f"on the held-out songs; instrument_balance closes "
        f"{means['instrument_balance']['gap_closed']:.0%}, the engineer's own rule (bound) "
        f"{means['bound']['gap_closed']:.0%}")

    log(f"[5/5] mix {held_out[0]} with the trained agent")
    mixed = mix_song(checkpoint, out / "songs" / held_out[0], out_dir=out / "mix",
                     progress=progress)
    outputs = {
        "songs": out / "songs", "cache": out / "cache", "trial": Path(best.path),
        "checkpoint": Path(checkpoint), "evaluation": out / "evaluation" / "evaluation.csv",
        "mix": mixed, "rows": rows, "seconds": time.time() - started,
    }
    log(f"\ndone in {outputs['seconds']:.0f} s. Outputs:")
    log(f"  held-out songs:   {out / 'songs'}")
    log(f"  prepared cache:   {out / 'cache'}")
    log(f"  training results: {best.path}  (tensorboard --logdir {out / 'runs'})")
    log(f"  checkpoint:       {checkpoint}")
    log(f"  evaluation:       {outputs['evaluation']} (+ .json, plots/)")
    for key, path in mixed.items():
        log(f"  mix {key + ':':13s} {path}")
    return outputs
