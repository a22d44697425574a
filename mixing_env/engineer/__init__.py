"""A consistent mixing engineer whose decisions depend on what the stems sound like.

The references of the project's songs, and of any multitrack folder through ``deepmixing
engineer``, come from :class:`Engineer`: a documented model of how engineers set levels from
the stems' loudness, tone, timing and masking (docs/engineer.md), in one of several
:data:`STYLES`, with a random part of known size (``inconsistency``). With the random part at
0 it is the ``bound`` baseline: what a perfect listener could reach.
"""

from mixing_env.engineer.analysis import StemAnalysis, analyse_stems
from mixing_env.engineer.engineer import DEFAULT_INCONSISTENCY_DB, Engineer, EngineerMix
from mixing_env.engineer.roles import ROLES, roles_of
from mixing_env.engineer.styles import DEFAULT_STYLE, STYLES, Style, get_style

__all__ = [
    "DEFAULT_INCONSISTENCY_DB",
    "DEFAULT_STYLE",
    "ROLES",
    "STYLES",
    "Engineer",
    "EngineerMix",
    "StemAnalysis",
    "Style",
    "analyse_stems",
    "get_style",
    "roles_of",
]
