"""RACOS (zoopt) without its progress chatter on standard output."""
from __future__ import annotations

import contextlib
import io


def quiet_min(objective, parameter):
    """`zoopt.Opt.min`, with the lines zoopt prints ("[zoopt] expected remaining running time ...") swallowed."""
    from zoopt import Opt
    with contextlib.redirect_stdout(io.StringIO()):
        return Opt.min(objective, parameter)
