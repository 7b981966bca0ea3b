"""The knob settings a knob sweep tries (policy tier, no cuDNN).

An engine of cuDNN's graph API describes each of its knobs with ``CUDNN_ATTR_ENGINE_KNOB_INFO``: a
type, a minimum, a maximum and a stride.  The exhaustive search's knob sweep
(``cudnnconv.knob_sandbox``, run in a worker process: a range says which values a knob takes, not
which combinations an engine supports, and one combination once ran a kernel that never returned)
tries settings in the order this module gives, until its budget runs out.  The parts that need no
cuDNN live here, so that the CPU tests can prove them:

- ``values`` and ``settings``: the knob settings of one engine, as the sorted ``((type, value), ...)``
  tuples the graph engine's tags and tuning records use.  A knob whose range holds more than
  ``MAX_VALUES`` values keeps that many, evenly spread and both ends kept; an engine whose knobs
  combine into more than ``MAX_SETTINGS`` settings keeps that many of the combinations, evenly
  spread over them in their order, the first and the last kept.  Both are deterministic, so two
  processes try the same candidates.
- ``neighbours``: the settings one knob away from a given one, for the sweep's coordinate search
  around the fastest configs (where the gains are: a 3x3 fp16 forward's best swept setting differed
  from the heuristics' first choice in two knobs).
- ``round_robin``: many engines' settings interleaved, so that a budget that runs out has covered
  the engines evenly.
"""
import collections
import itertools
import math

KnobInfo = collections.namedtuple("KnobInfo", "type minimum maximum stride")
KnobInfo.__doc__ = "One knob of an engine, as CUDNN_ATTR_ENGINE_KNOB_INFO describes it."

MAX_VALUES = 16            # values of one knob, at most
MAX_SETTINGS = 64          # knob settings of one engine, at most


def as_setting(pairs):
    """A knob setting in its one form: ``((type, value), ...)`` of ints, sorted by type (from any
    iterable of pairs, JSON's lists among them)."""
    return tuple(sorted((int(t), int(v)) for t, v in pairs))


def _spread(n, k):
    """``k`` indices of ``range(n)`` evenly spread, 0 and n - 1 among them (all of them if k >= n)."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def values(info, cap=MAX_VALUES):
    """The values a knob takes: ``minimum``, ``minimum + stride``, ... up to ``maximum``, at most
    ``cap`` of them (evenly spread, both ends kept).  A knob that describes no value (maximum below
    minimum) has none; a stride below 1 counts as 1."""
    lo, hi, step = int(info.minimum), int(info.maximum), max(int(info.stride), 1)
    if hi < lo:
        return []
    n = (hi - lo) // step + 1
    return [lo + i * step for i in _spread(n, cap)]


def _knobs(infos, value_cap):
    """[(type, values)] sorted by type: each type once (its first description), knobs without values
    dropped."""
    seen, knobs = set(), []
    for info in infos:
        t = int(info.type)
        if t in seen:
            continue
        seen.add(t)
        vals = values(info, value_cap)
        if vals:
            knobs.append((t, vals))
    knobs.sort()
    return knobs


def settings(infos, cap=MAX_SETTINGS, value_cap=MAX_VALUES):
    """The knob settings of an engine with knobs ``infos``: tuples ``((type, value), ...)`` sorted
    by type, at most ``cap`` of them (see the module doc).  An engine without knobs has one
    setting, the empty one; a knob with no value drops out (cuDNN then uses its default).  A knob
    type listed twice counts once (its first description)."""
    knobs = _knobs(infos, value_cap)
    sizes = [len(v) for _, v in knobs]
    total = math.prod(sizes)
    if total <= cap:
        combos = itertools.product(*[v for _, v in knobs])
        return [tuple(zip([t for t, _ in knobs], c)) for c in combos]
    out = []
    for flat in _spread(total, cap):
        setting, rest = [], flat
        for (t, vals), n in zip(reversed(knobs), reversed(sizes)):     # the last knob varies fastest
            rest, i = divmod(rest, n)
            setting.append((t, vals[i]))
        out.append(tuple(sorted(setting)))
    return out


def neighbours(setting, infos, value_cap=MAX_VALUES):
    """The settings that differ from ``setting`` (``((type, value), ...)``) in one knob's value,
    each knob of ``infos`` in type order, its values in order; a knob ``setting`` does not name is
    varied too (the others keep their values).  Knobs ``setting`` names that ``infos`` does not
    describe keep their values.  Never ``setting`` itself; each neighbour once."""
    base = dict(as_setting(setting))
    own = tuple(sorted(base.items()))
    out, seen = [], {own}
    for t, vals in _knobs(infos, value_cap):
        for v in vals:
            if base.get(t) == v:
                continue
            moved = dict(base)
            moved[t] = v
            s = tuple(sorted(moved.items()))
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def round_robin(per_engine):
    """``[(engine, [setting, ...]), ...]`` interleaved: every engine's first setting, then every
    engine's second, and so on, as ``(engine, setting)`` pairs."""
    queues = [(e, list(s)) for e, s in per_engine]
    for i in range(max((len(s) for _, s in queues), default=0)):
        for e, s in queues:
            if i < len(s):
                yield e, s[i]
