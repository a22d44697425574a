"""Songs played by sampled instruments (a General MIDI soundfont) and mixed by the engineer.

The realistic generator; :mod:`mixing_env.songs.procedural` stays the fast one for tests.
"""

from mixing_env.songs.sampled.songs import (
    generate_sampled_song,
    make_sampled_dataset,
    sampled_songs,
)

__all__ = ["generate_sampled_song", "make_sampled_dataset", "sampled_songs"]
