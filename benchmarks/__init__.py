"""Benchmarks of the quality bars: env step, model, prepare, learning (``deepmixing benchmark``).

Each ``bench_<name>`` module has ``main(argv)``; :mod:`benchmarks.quality` is the learning
benchmark's harness (split, demonstrations, agent experiments, scoring, results page).
"""
