"""Multitrack data: layouts, the instrument taxonomy, preprocessing, the cache.

Generated songs (procedural and sampled) live in :mod:`mixing_env.songs`, the engineer that
mixes them in :mod:`mixing_env.engineer`.
"""

from mixing_env.data.audio_io import DataWarning, read_audio, write_audio
from mixing_env.data.cache import PreparedDataset
from mixing_env.data.layouts import SongSource, StemSource, discover_songs
from mixing_env.data.prepare import prepare_dataset
from mixing_env.data.slots import default_layout, place_stems, read_layout, write_layout
from mixing_env.data.song import Song
from mixing_env.data.song_folder import write_song_folder
from mixing_env.data.taxonomy import Taxonomy

__all__ = [
    "DataWarning",
    "PreparedDataset",
    "Song",
    "SongSource",
    "StemSource",
    "Taxonomy",
    "default_layout",
    "discover_songs",
    "place_stems",
    "prepare_dataset",
    "read_audio",
    "read_layout",
    "write_audio",
    "write_layout",
    "write_song_folder",
]
