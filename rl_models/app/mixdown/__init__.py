"""The parts of ``deepmixing mix``, each with one job (:mod:`rl_models.app.mix` runs them).

- :mod:`.stems`: the stem files, checked from their headers and read block by block;
- :mod:`.observation`: the env's observation of a song, computed window by window;
- :mod:`.agent`: the agent's pass over a song, its state carried from window to window;
- :mod:`.panning`: where each mono stem sits (:file:`panning.yaml`), the pan law;
- :mod:`.render`: the stems times their gain curves, placed and summed;
- :mod:`.loudness`: BS.1770 loudness and 4x true peak of audio fed in blocks;
- :mod:`.limiter`: the look-ahead true-peak limiter of the master bus;
- :mod:`.master`: make-up gain and limiter, pass after pass, to the loudness target;
- :mod:`.automation`: the points where a gain curve moves, and the CSV and JSON;
- :mod:`.reaper`: the REAPER project of the stems and their envelopes.
"""
