"""Songs with known gain automation, made by the project: the fast procedural songs, the
sampled-instrument songs mixed by the engineer (:mod:`mixing_env.engineer`), and the endless
training stream of the latter (:mod:`mixing_env.songs.stream`).

Reading real multitrack datasets lives apart, in :mod:`mixing_env.data`.
"""
