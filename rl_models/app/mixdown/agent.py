"""The agent's pass over a song: one deterministic action per chunk, window by window.

:func:`play_streaming` does what one :class:`~mixing_env.envs.mixing_env.MixingEnv` episode
does for the agent (the observation, the action put on the simplex, the mix of the chunk and
its MFCC, which the next observation shows), with the env's own kernels, but on stems read a
window at a time, so memory does not grow with the song. Rewards need a reference and are
left out.

The module runs through :class:`FastModuleSteps`: one step of a small policy is a hundred
tiny torch operations, and their Python overhead, not arithmetic, is most of a mix's time.
The step is traced once per song with ``torch.jit.trace`` and frozen (deprecated in torch
2.x, yet the one tool here whose start-up costs less than the mix: ``torch.compile`` compiles
C++ for longer than a song takes), and checked against the plain module on the song's first
steps; any difference, or a module that cannot be traced, falls back to the plain module.
The next window's observations are built on a second thread while the agent plays one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from mixing_env.step_kernels import ChunkScorer, simplex_gains, window_and_rms
from rl_models.app.mixdown.observation import StreamingObservation
from rl_models.app.module_policy import ModulePolicy

__all__ = ["FastModuleSteps", "play_streaming", "prefetch"]

_CHECKED_STEPS = 8  # steps on which the traced module must equal the plain one


class FastModuleSteps:
    """A trained module's deterministic action, one observation at a time, state carried.

    Equal to :class:`~rl_models.app.module_policy.ModulePolicy` (its slow twin here), faster.

    Args:
        module: The RLModule.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.name = "agent"
        self.plain = ModulePolicy(module)
        self.traced: Callable | None = None
        self.state: tuple | None = None
        self._keys: list | None = None
        self._steps = 0
        self.fell_back: str | None = None
        """Why the plain module is used, when it is."""

    def reset(self) -> None:
        """A new song: initial state; the next step traces the module again."""
        self.plain.reset()
        self.traced, self._steps, self.fell_back = None, 0, None
        self.state = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action for one observation, float32 [shape=(C,)]."""
        import torch

        if self.fell_back is not None:
            return self.plain.act(obs)
        tensors = tuple(torch.from_numpy(obs[k]) for k in ("chunks", "mix_mfcc", "track_mask"))
        if self.traced is None:
            self._trace(tensors)
            if self.fell_back is not None:
                return self.plain.act(obs)
        with torch.inference_mode():
            action, *state = self.traced(*tensors, *self.state)
        self.state = tuple(state)
        action = action.numpy().reshape(-1).astype(np.float32, copy=False)
        if self._steps < _CHECKED_STEPS:
            self._steps += 1
            expected = self.plain.act(obs)  # keeps the plain module's state in step
            if not np.allclose(action, expected, rtol=1e-5, atol=1e-7):
                self.fell_back = "the traced module differs from the plain one"
                return expected
        return action

    def _trace(self, tensors: tuple) -> None:
        import torch
        import tree
        from ray.rllib.core.columns import Columns

        module, stateful = self.module, self.module.is_stateful()
        initial = module.get_initial_state() if stateful else {}
        flat = [torch.as_tensor(np.asarray(s))[None] for s in tree.flatten(initial)]
        expand = (lambda x: x[None, None]) if stateful else (lambda x: x[None])

        class Step(torch.nn.Module):
            """One step as a module of tensors only: what the tracer records."""

            def __init__(self) -> None:
                super().__init__()
                self.module = module

            def forward(self, chunks, mix_mfcc, track_mask, *state):
                batch = {Columns.OBS: {"chunks": expand(chunks), "mix_mfcc": expand(mix_mfcc),
                                       "track_mask": expand(track_mask)}}
                if stateful:
                    batch[Columns.STATE_IN] = tree.unflatten_as(initial, list(state))
                out = self.module.forward_inference(batch)
                dist = self.module.get_inference_action_dist_cls().from_logits(
                    out[Columns.ACTION_DIST_INPUTS]).to_deterministic()
                new_state = tree.flatten(out[Columns.STATE_OUT]) if stateful else []
                return (dist.sample(), *new_state)

        frozen = [p for p in module.parameters() if p.requires_grad]
        training = module.training
        try:
            for p in frozen:  # traced weights become constants, which must not need grads
                p.requires_grad_(False)
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # deprecation and tracer notes
                traced = torch.jit.trace(Step().eval(), (*tensors, *flat), check_trace=False)
                try:  # weights folded into the graph: a few percent faster
                    traced = torch.jit.freeze(traced)
                except Exception:  # noqa: BLE001 - the unfrozen trace is as right
                    pass
            self.traced, self.state = traced, tuple(flat)
        except Exception as e:  # any module the tracer cannot follow runs as it is
            self.fell_back = f"the module cannot be traced ({type(e).__name__}: {e})"
        finally:
            for p in frozen:
                p.requires_grad_(True)
            module.train(training)


def play_streaming(steps: FastModuleSteps, observation: StreamingObservation,
                   windows: Iterable[np.ndarray], *, rows: list[int], n_slots: int,
                   n_chunks: int, on_step: Callable[[int], None] | None = None) -> np.ndarray:
    """Plays a song through the agent, a window of chunks at a time.

    Args:
        steps: The agent.
        observation: The observation builder (its config, layout and first-pass statistics).
        windows: The song's consecutive windows of placed stems at the env's rate,
            float32 [shape=(A, W, chunk)], T chunks in all.
        rows: The layout row of each placed stem (A).
        n_slots: C, the layout's slots.
        n_chunks: T.
        on_step: Called with the chunks done after each window (a progress bar).

    Returns:
        The gains the env would apply, float32 [shape=(A, T)] (on the simplex over the
        placed stems).
    """
    cfg, pre = observation.config, observation.precompute
    chunk, w_obs = pre.chunk_size, cfg.obs_window
    rows = np.asarray(rows)  # an index array: a list would be converted at every step
    mask = np.zeros(n_slots)
    mask[rows] = 1.0
    mask32 = mask.astype(np.float32)
    equal = mask / mask.sum()
    scorer = ChunkScorer(pre.mfcc)
    no_reference = np.zeros(cfg.n_mfcc)
    stems_now = np.zeros((n_slots, chunk), np.float32)  # the chunk of every slot, env layout
    mix, windowed = np.zeros(chunk, np.float32), np.zeros(chunk)
    gains64 = np.zeros(n_slots)
    mix_mfcc = np.zeros(cfg.n_mfcc, np.float32)
    out = np.zeros((len(rows), n_chunks), np.float32)
    rfft = np.fft.rfft

    def observations(stems: np.ndarray) -> np.ndarray:
        """Every step's ``chunks`` observation of a window [shape=(W, C, W_obs, F)]."""
        feats = observation.window(stems)  # (A + 1, W_obs - 1 + W, F): the dummy's last
        w = stems.shape[1]
        obs = np.empty((w, n_slots, w_obs, observation.width), np.float32)
        steps_view = np.lib.stride_tricks.sliding_window_view(feats, w_obs, axis=1)[:, :w]
        obs[:] = steps_view[-1].transpose(0, 2, 1)[:, None]  # every slot a dummy's, then
        obs[:, rows] = steps_view[:-1].transpose(1, 0, 3, 2)  # the stems' (W, A, W_obs, F)
        return obs

    steps.reset()
    t = 0
    # The next window is read and its observations built on another thread while the agent
    # plays this one (numpy and torch release the GIL in their kernels).
    for stems, obs in prefetch((stems, observations(stems)) for stems in windows):
        w = stems.shape[1]
        played = np.empty((w, n_slots), np.float32)
        for k in range(w):
            action = steps.act({"chunks": obs[k], "mix_mfcc": mix_mfcc, "track_mask": mask32})
            # MixingEnv.step's mix and MFCC, with its kernels and in its order.
            simplex_gains(action, mask, equal, gains64)
            gains32 = played[k]
            gains32[:] = gains64
            stems_now[rows] = stems[:, k]
            np.matmul(gains32, stems_now, out=mix)
            window_and_rms(mix, scorer.window, windowed)
            mix_mfcc = np.empty(cfg.n_mfcc, np.float32)
            scorer(rfft(windowed), no_reference, 1.0, mix_mfcc)
        out[:, t : t + w] = played[:, rows].T
        t += w
        if on_step is not None:
            on_step(w)
    return out


def prefetch(items: Iterable, depth: int = 1):
    """Yields ``items``, computing up to ``depth`` ahead on a worker thread.

    An exception raised while computing an item is raised here, at that item.
    """
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                box.put((item, None))
            box.put((done, None))
        except BaseException as e:  # handed to the consumer
            box.put((done, e))

    worker = threading.Thread(target=work, name="mix-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = box.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting to put
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.01)
