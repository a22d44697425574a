"""Baseline mixing policies and the one registry of them.

Every baseline gives gains on the simplex over a song's real tracks, ``gains(song) -> (C, T)``,
and follows the :class:`~mixing_env.episodes.Policy` protocol (``reset(song, start)``, then
``act(obs)`` per step), so :func:`~mixing_env.episodes.run_episode` plays it like the agent.
All of them are scored with the env's own level treatment (:mod:`mixing_env.reward`), so the
per-chunk oracle is an upper bound. :data:`BASELINES` maps each name to a factory;
:func:`make_baseline` turns a policy spec (``"equal"``, ``"instrument_balance=table.json"``)
into a policy. Evaluation, demonstrations, the learning benchmark and the CLI read it.

* :class:`EqualGains`: 1/n for every real track.
* :class:`LoudnessGains`: every stem at equal integrated loudness (pyloudnorm, ITU-R BS.1770).
* :class:`OraclePolicy`: per chunk, NNLS of the reference chunk on the stem chunks, put on the
  simplex (needs the reference: an upper bound, not a deployable policy).
* :class:`StaticOracle`: one NNLS over the whole song, one gain vector for all chunks.
* :class:`InstrumentBalance`: per slot, a level relative to the stem's loudness while it plays,
  fitted on training songs (:mod:`mixing_env.balance`); the field's learned baseline.
* :class:`EngineerBound`: the engineer that made the references, with its random part at 0
  (:mod:`mixing_env.engineer`): what a perfect listener could reach (``bound``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.optimize

from mixing_env.data.song import Song
from mixing_env.errors import ConfigError
from mixing_env.reward import to_simplex

__all__ = [
    "BALANCE_FILE",
    "BASELINES",
    "BaselinePolicy",
    "EngineerBound",
    "EqualGains",
    "InstrumentBalance",
    "LoudnessGains",
    "OraclePolicy",
    "StaticOracle",
    "is_baseline",
    "make_baseline",
]

BALANCE_FILE = "instrument_balance.json"
"""Default table of ``instrument_balance``: looked for in the dataset's cache folder."""

_SILENT = 1e-12  # energy below which a chunk counts as silent


class BaselinePolicy:
    """A policy that knows each song's gains in advance; subclasses implement :meth:`gains`.

    Follows :class:`~mixing_env.episodes.Policy`: ``reset(song, start)`` computes the song's
    gains (once per song object) and each ``act`` returns the next chunk's column.
    """

    name = "baseline"

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self._gains: np.ndarray | None = None
        self._t = 0

    def gains(self, song: Song) -> np.ndarray:
        """Gains per slot and chunk, float32 [shape=(C, T)], on the simplex over real tracks."""
        raise NotImplementedError

    def cached_gains(self, song: Song) -> np.ndarray:
        """:meth:`gains`, computed once per song object."""
        key = (song.name, id(song))
        if key not in self._cache:
            self._cache = {key: self.gains(song)}  # one song at a time is all an env needs
        return self._cache[key]

    def reset(self, song: Song, start: int) -> None:
        """A new episode on ``song`` from chunk ``start``."""
        self._gains, self._t = self.cached_gains(song), int(start)

    def act(self, obs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The gains of the next chunk, float32 [shape=(C,)] (the observation is not needed)."""
        if self._gains is None:
            raise ConfigError(f"{self.name}: act() before reset(song, start)")
        action = self._gains[:, self._t]
        self._t += 1
        return action

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EqualGains(BaselinePolicy):
    """Every real track at 1/n for the whole song."""

    name = "equal"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        g = to_simplex(np.ones(song.n_slots), song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class LoudnessGains(BaselinePolicy):
    """Gains that bring every stem to the same integrated loudness.

    Loudness per stem over the song's valid audio with pyloudnorm (BS.1770 gating); gain
    proportional to ``10 ** (-LUFS / 20)``. Silent stems (LUFS = -inf) get 0. Stems shorter
    than pyloudnorm's 400 ms block fall back to RMS level in dBFS.
    """

    name = "loudness"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        from mixing_env.features import stem_loudness  # librosa: not needed for the registry

        lufs = stem_loudness(song)
        weights = np.where(np.isfinite(lufs), 10 ** (-np.nan_to_num(lufs) / 20), 0.0)
        g = to_simplex(weights, song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class StaticOracle(BaselinePolicy):
    """One NNLS over the whole song: the best single gain vector, on the simplex.

    Solved from the Gram matrix (C x C) so long songs never build a (T*chunk, C) matrix:
    ``||A w - b||^2 = ||R w - R^-T A^T b||^2 + const`` with ``A^T A = R^T R``.
    """

    name = "static_oracle"

    def weights(self, song: Song) -> np.ndarray:
        """The NNLS weights before the simplex, on the reference's scale, float64 [shape=(C,)]."""
        real = np.flatnonzero(np.asarray(song.track_mask) > 0)
        n = song.n_valid_chunks or song.n_chunks
        gram = np.zeros((len(real), len(real)))
        rhs = np.zeros(len(real))
        for a in range(0, n, 1024):  # stream over chunks: memory-mapped songs stay on disk
            x = np.asarray(song.stems[real, a : min(a + 1024, n)], np.float64)
            x = x.reshape(len(real), -1)
            ref = np.asarray(song.reference[a : min(a + 1024, n)], np.float64).reshape(-1)
            gram += x @ x.T
            rhs += x @ ref
        w = np.zeros(song.n_slots)
        if np.trace(gram) > _SILENT:
            # Tiny ridge keeps Cholesky defined for silent or identical stems.
            R = scipy.linalg.cholesky(gram + 1e-9 * np.trace(gram) * np.eye(len(real)))
            w[real] = scipy.optimize.nnls(R, scipy.linalg.solve_triangular(R.T, rhs, lower=True))[0]
        return w

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        g = to_simplex(self.weights(song), song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)


class OraclePolicy(BaselinePolicy):
    """Per-chunk NNLS of the reference on the stems that play, projected onto the simplex.

    ``w_t = argmin_{w >= 0} ||reference[t] - sum_i w_i stems[i, t]||`` over the tracks that
    sound in chunk t (scipy.optimize.nnls), then ``w_t / sum(w_t)``. A silent track's weight
    changes nothing in the mix; it keeps the :class:`StaticOracle` weight (same scale as w_t),
    so the automation stays continuous and demonstrations built from it have no spurious zeros.
    Chunks where every stem is silent get the static weights.
    """

    name = "oracle"

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        static = StaticOracle().weights(song)
        real = np.asarray(song.track_mask) > 0
        out = np.empty((song.n_slots, song.n_chunks))
        for t in range(song.n_chunks):
            chunk = np.asarray(song.stems[:, t], dtype=np.float64)  # (C, chunk)
            playing = np.flatnonzero(real & (np.sum(chunk * chunk, axis=-1) > _SILENT))
            w = static.copy()
            if playing.size:
                ref = np.asarray(song.reference[t], np.float64)
                w[playing] = scipy.optimize.nnls(chunk[playing].T, ref)[0]
            out[:, t] = to_simplex(w, song.track_mask)
        return out.astype(np.float32)


class InstrumentBalance(BaselinePolicy):
    """Per slot, a fixed level relative to the stem's loudness while it plays.

    A stem in slot s with loudness L (LUFS, :func:`~mixing_env.features.stem_loudness`) gets
    the weight ``10 ** ((level_db - L) / 20)`` with ``level_db`` the table's entry for s, then
    all weights go onto the simplex: every stem is brought to its slot's learnt level. A slot
    the table lacks falls back to its instrument's mean (the slot name without ``#n``), then
    its section's (the part before ``/``), then 0 dB. Silent stems get 0. The table is fitted
    by :func:`mixing_env.balance.fit_instrument_balance` and stored as JSON.

    Args:
        slots: dB per slot name (``"Drums/Kick#1"``).
        instruments: dB per instrument (``"Drums/Kick"``), the first fallback.
        sections: dB per section (``"Drums"``), the second fallback.
        meta: What the table was fitted on (songs, counts), kept in the JSON.
    """

    name = "instrument_balance"

    def __init__(self, slots: Mapping[str, float], instruments: Mapping[str, float],
                 sections: Mapping[str, float], meta: Mapping[str, object] | None = None):
        super().__init__()
        self.slots, self.instruments, self.sections = dict(slots), dict(instruments), dict(sections)
        self.meta = dict(meta or {})

    def level_db(self, slot: str) -> float:
        """The table's level for a slot name, with the documented fallbacks."""
        instrument = slot.split("#", 1)[0]
        for table, key in ((self.slots, slot), (self.instruments, instrument),
                           (self.sections, instrument.split("/", 1)[0])):
            if key in table:
                return float(table[key])
        return 0.0

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        from mixing_env.features import stem_loudness  # librosa: not needed for the registry

        lufs = stem_loudness(song)
        levels = np.array([self.level_db(s) for s in song.slot_names])
        weights = np.where(np.isfinite(lufs), 10 ** ((levels - np.nan_to_num(lufs)) / 20), 0.0)
        g = to_simplex(weights, song.track_mask)
        return np.repeat(g[:, None], song.n_chunks, axis=1).astype(np.float32)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON (``slots``, ``instruments``, ``sections``, ``meta``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"kind": self.name, "slots": dict(self.slots),
                   "instruments": dict(self.instruments), "sections": dict(self.sections),
                   "meta": dict(self.meta)}
        path.write_text(json.dumps(payload, indent=1, sort_keys=True))
        return path

    @classmethod
    def read(cls, path: str | os.PathLike) -> InstrumentBalance:
        """Read a table written by :meth:`write`.

        Raises:
            ConfigError: The file is missing or is not such a table.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"instrument balance table not found: {path} (write one with "
                              f"'deepmixing balance fit <dataset cache>')")
        try:
            data = json.loads(path.read_text())
            tables = [{str(k): float(v) for k, v in data[key].items()}
                      for key in ("slots", "instruments", "sections")]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{path} is not an instrument balance table: {e}") from e
        if not all(math.isfinite(v) for t in tables for v in t.values()):
            raise ConfigError(f"{path}: the instrument balance table holds non-finite levels")
        return cls(*tables, meta=dict(data.get("meta") or {}))

    def __repr__(self) -> str:
        return f"InstrumentBalance({len(self.slots)} slots)"


class EngineerBound(BaselinePolicy):
    """The engineer's own rule: its gains with the inconsistency at 0, on the simplex.

    On songs the engineer mixed, this is what a listener who learnt the rule perfectly would
    do; the distance left to the oracle is the engineer's random part. The style is the
    song's (read from ``sampled.json`` or ``engineer.json`` beside its stems), else the one
    given (``bound=rock``), else the default. Roles come from the stems' file names.

    Args:
        style: A style name, or None to read it from each song.
    """

    name = "bound"

    def __init__(self, style: str | None = None):
        super().__init__()
        from mixing_env.engineer import get_style

        self.style = None if style is None else get_style(style).name

    def style_of(self, song: Song) -> str:
        """The style the song's references were made in (see the class docstring)."""
        from mixing_env.engineer import DEFAULT_STYLE

        if self.style is not None:
            return self.style
        for path in song.stem_files.values():
            for meta in ("sampled.json", "engineer.json"):
                found = Path(path).with_name(meta)
                if found.is_file():
                    return json.loads(found.read_text()).get("engineer", {}).get(
                        "style", DEFAULT_STYLE)
            break
        return DEFAULT_STYLE

    def gains(self, song: Song) -> np.ndarray:  # noqa: D102
        from mixing_env.engineer import Engineer
        from mixing_env.engineer.roles import slot_roles

        real = np.flatnonzero(np.asarray(song.track_mask) > 0)
        n = song.n_valid_chunks or song.n_chunks
        stems = np.asarray(song.stems[real, :n], dtype=np.float32).reshape(len(real), -1)
        roles = slot_roles([song.slot_names[i] for i in real], song.stem_files)
        decided = Engineer(self.style_of(song), 0.0).mix(
            stems, roles, sample_rate=song.sample_rate, chunk_size=song.chunk_size)
        weights = np.zeros((song.n_slots, song.n_chunks))
        weights[real, :n] = decided.gains[:, :n]
        weights[real, n:] = decided.gains[:, n - 1 : n]  # padding holds the last chunk
        return to_simplex(weights.T, song.track_mask).T.astype(np.float32)


def _bound(arg: str | None, dataset_dir: str | None) -> EngineerBound:
    return EngineerBound(arg)


def _instrument_balance(arg: str | None, dataset_dir: str | None) -> InstrumentBalance:
    if arg is None:
        if dataset_dir is None:
            raise ConfigError("instrument_balance needs its table: write "
                              "'instrument_balance=<table.json>' or use a dataset whose cache "
                              f"holds {BALANCE_FILE}")
        arg = str(Path(dataset_dir) / BALANCE_FILE)
    return InstrumentBalance.read(arg)


def _plain(cls: type[BaselinePolicy]) -> Callable[[str | None, str | None], BaselinePolicy]:
    def factory(arg: str | None, dataset_dir: str | None) -> BaselinePolicy:
        if arg is not None:
            raise ConfigError(f"baseline {cls.name!r} takes no argument, got {cls.name}={arg}")
        return cls()

    return factory


BASELINES: dict[str, Callable[[str | None, str | None], BaselinePolicy]] = {
    **{cls.name: _plain(cls) for cls in (EqualGains, LoudnessGains, OraclePolicy, StaticOracle)},
    InstrumentBalance.name: _instrument_balance,
    EngineerBound.name: _bound,
}
"""The one baseline registry: name -> factory ``(argument, dataset_dir) -> policy``.

Names: ``"equal"``, ``"loudness"``, ``"oracle"``, ``"static_oracle"``,
``"instrument_balance"`` (argument: its JSON table; default: :data:`BALANCE_FILE` in the
dataset's folder), ``"bound"`` (argument: the engineer's style; default: the song's).
"""


def is_baseline(spec: str) -> bool:
    """Whether a policy spec names a baseline (``name`` or ``name=argument``)."""
    return isinstance(spec, str) and spec.split("=", 1)[0] in BASELINES


def make_baseline(spec: str, *, dataset_dir: str | None = None) -> BaselinePolicy:
    """The baseline a spec names: ``"equal"``, ``"instrument_balance=table.json"``, ...

    Args:
        spec: A name of :data:`BASELINES`, optionally ``=argument``.
        dataset_dir: The dataset played, where a baseline's default file lies.

    Raises:
        ConfigError: An unknown name or a bad argument.
    """
    name, _, arg = str(spec).partition("=")
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; expected one of {list(BASELINES)}")
    return BASELINES[name](arg or None, dataset_dir)
