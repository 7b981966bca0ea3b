"""What a tuning record's fields may hold (policy tier, a leaf): the checks every record codec
shares, the tuning file's (cudnnconv.tuning) and each engine's own (engines/legacy_record.py, the
graph engine's).  A value that does not fit raises BadEntry, whose message names the field."""
import json
import math

from cudnnconv import params, workspace

WORKSPACE_CAP = workspace.TIB   # the workspace module refuses >= 1 TiB, so no record may hold more
MAX_STR = 256
MAX_PLAN_JSON = 4 << 20     # characters of a graph record's plan JSON
CUDNN_DATA_FLOAT = params._CUDNN_DTYPE["float32"]
FMA_MATH = 3                # cudnnMathType_t CUDNN_FMA_MATH


class BadEntry(ValueError):
    """One entry cannot be used."""


def short_repr(v):
    r = repr(v) if not isinstance(v, int) or abs(v) < 10 ** 30 else "<int of %d bits>" % v.bit_length()
    return r if len(r) <= 60 else r[:57] + "..."


def as_int(v, what, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadEntry("%s must be an int in [%d, %d], got %s" % (what, lo, hi, short_repr(v)))
    return v


def as_bool(v, what):
    if not isinstance(v, bool):
        raise BadEntry("%s must be true or false, got %s" % (what, short_repr(v)))
    return v


def as_str(v, what, maxlen=MAX_STR):
    if not isinstance(v, str) or len(v) > maxlen:
        raise BadEntry("%s must be a string of at most %d characters" % (what, maxlen))
    return v


def as_float(v, what, lo, hi):
    """``v`` as a finite float in [lo, hi]; an int too large for a float (10**400) is out of range, not a crash."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadEntry("%s must be a number, got %s" % (what, short_repr(v)))
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or not lo <= f <= hi:
        raise BadEntry("%s must be finite in [%g, %g], got %s" % (what, lo, hi, short_repr(v)))
    return f


def int_tuple(v, what, n_lo, n_hi, lo, hi):
    if not isinstance(v, list) or not n_lo <= len(v) <= n_hi:
        raise BadEntry("%s must be a list of %d to %d ints" % (what, n_lo, n_hi))
    return tuple(as_int(x, what, lo, hi) for x in v)


def no_json_constant(name):
    """json.loads' parse_constant: NaN and the infinities are no valid values in a tuning file."""
    raise ValueError("%s is not allowed" % name)


def canonical_json(obj):
    """One text per value: sorted keys, no spaces (for identities and digests)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _to_json(v):
    if isinstance(v, tuple):
        return [_to_json(x) for x in v]
    return v


def key_to_json(key):
    """A ProblemKey as a JSON-ready dict (tuples become lists); tuning.key_from_json reads it back."""
    return {f: _to_json(getattr(key, f)) for f in params.ProblemKey._fields}
