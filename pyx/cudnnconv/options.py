"""Per-thread default flags and their resolution for one call (policy tier)."""
import collections
import contextlib
import numbers

import numpy

from cudnnconv.core.state import state as _state

ENGINES = ("auto", "graph", "legacy")

Options = collections.namedtuple(
    "Options", "benchmark deterministic allow_tf32 workspace_limit engine")
Options.__doc__ = "The flags of one call, resolved against the thread's defaults."

_DEFAULT = Options(False, False, True, None, "auto")


def current():
    """This thread's defaults (what ``flags()`` last set, or the built-in ones)."""
    return _state().options or _DEFAULT


def _check_limit(v):
    """None, or a non-negative int of bytes (a NumPy integer too; never a bool)."""
    if v is None:
        return None
    if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral) or v < 0:
        raise ValueError("workspace_limit must be None or a non-negative number of bytes, got %r" % (v,))
    return int(v)


def _check_flag(name, v):
    """True or False (a NumPy bool too).  Anything else is a TypeError: bool()
    would read benchmark='no' or benchmark=2 as True."""
    if isinstance(v, (bool, numpy.bool_)):
        return bool(v)
    raise TypeError("%s must be True, False or None, got %r" % (name, v))


def _check_engine(v):
    if not isinstance(v, str) or v not in ENGINES:       # a str: `in` would compare an array elementwise
        raise ValueError("engine must be one of %s, got %r" % (", ".join(map(repr, ENGINES)), v))
    return v


def resolve(benchmark=None, deterministic=None, allow_tf32=None, workspace_limit=None, engine=None):
    """Options for one call: each None takes the thread's default."""
    d = current()
    if benchmark is None and deterministic is None and allow_tf32 is None \
            and workspace_limit is None and engine is None:
        return d
    return Options(
        d.benchmark if benchmark is None else _check_flag("benchmark", benchmark),
        d.deterministic if deterministic is None else _check_flag("deterministic", deterministic),
        d.allow_tf32 if allow_tf32 is None else _check_flag("allow_tf32", allow_tf32),
        d.workspace_limit if workspace_limit is None else _check_limit(workspace_limit),
        d.engine if engine is None else _check_engine(engine),
    )


@contextlib.contextmanager
def flags(benchmark=False, deterministic=False, allow_tf32=True, workspace_limit=None, engine="auto"):
    """Set this thread's defaults for the calls inside the ``with`` block.

    Like ``torch.backends.cudnn.flags``, every flag takes the value given here
    (a flag left out takes its default, not the enclosing block's).  Other
    threads are not affected.  Per-call arguments still win.

    Raises:
        TypeError: a flag that is not True, False or None.
        ValueError: a negative or non-integral ``workspace_limit``, or an
            ``engine`` other than 'auto', 'graph' or 'legacy'.
    """
    new = Options(_check_flag("benchmark", benchmark), _check_flag("deterministic", deterministic),
                  _check_flag("allow_tf32", allow_tf32), _check_limit(workspace_limit), _check_engine(engine))
    st = _state()
    old = st.options
    st.options = new
    try:
        yield new
    finally:
        st.options = old
