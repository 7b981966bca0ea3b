"""Noise-robust choice among timed candidates (policy tier, pure, no GPU).

A benchmark sample is noisy: a single cudnnFind time or one CUDA-event pair
can swing by several percent between runs, so "the fastest" flips from
process to process.  The rule here makes the choice stable:

1. each candidate is timed k times after warm-up; its time is the median of
   its samples (``median_and_spread``);
2. its *cost* is that time, or, where the candidate carries ``issue_ms`` (the
   host time a call of it takes to issue, measured by
   ``cudnnconv.gpu_timing.rank_host_aware``), the larger of the two: a call
   costs whichever of the host and the GPU is slower (``cost_ms``);
3. candidates without a usable sample (none, or only NaN/inf/negative) rank
   last, in their fixed order;
4. among the rest, the cheapest cost ``m`` opens a *tie group*: every
   candidate whose cost is within ``margin`` of it (cost <= m * (1 +
   margin)).  The group's winner is the one with the smallest workspace, then
   the smallest tag (a fixed order: the algorithm id or the engine tag);
5. the winner is removed and step 4 repeats on the rest, which gives a total
   order (``rank``).  ``choose`` returns its first element.

A candidate is anything with ``samples`` (a sequence of times in ms),
``workspace`` (bytes) and ``tag`` (an int or a str; compared ints first, then
strings), and optionally ``issue_ms`` (None, NaN or negative: not measured),
or a ``(tag, samples, workspace)`` tuple.
"""
import math

DEFAULT_MARGIN = 0.03


def _usable(samples):
    out = []
    for s in samples or ():
        try:
            v = float(s)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and v >= 0:
            out.append(v)
    return out


def median_and_spread(samples):
    """(median, spread) of the usable samples, in their unit.

    ``spread`` is max - min of the usable samples (0 for one sample).  With
    no usable sample, both are ``nan``.
    """
    v = sorted(_usable(samples))
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    mid = n // 2
    med = v[mid] if n % 2 else (v[mid - 1] + v[mid]) / 2.0
    return med, v[-1] - v[0]


def _fields(c):
    if isinstance(c, tuple) and not hasattr(c, "_fields"):
        tag, samples, ws = c
        return tag, samples, ws
    return c.tag, c.samples, c.workspace


def _issue(c):
    """``c``'s measured issue time (ms), or None."""
    v = getattr(c, "issue_ms", None)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


def cost_ms(c):
    """What a call of candidate ``c`` costs (ms): its median GPU time, or the
    larger of that and its measured issue time; NaN without a usable sample."""
    med, _ = median_and_spread(_fields(c)[1])
    host = _issue(c)
    return med if host is None or math.isnan(med) else max(med, host)


def tag_order(tag):
    """The fixed order of tags: ints (and bools) by value, then anything else by its str."""
    if isinstance(tag, int):
        return (0, int(tag), "")
    return (1, 0, str(tag))


def rank(candidates, margin=DEFAULT_MARGIN):
    """``candidates`` in the noise-robust order (a new list; see the module doc)."""
    if margin is None:
        margin = DEFAULT_MARGIN
    margin = float(margin)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError("margin must be a finite non-negative number, got %r" % (margin,))
    timed, untimed = [], []
    for i, c in enumerate(candidates):
        tag, _, ws = _fields(c)
        med = cost_ms(c)
        ws = int(ws) if ws is not None else 0
        entry = (med, ws, tag_order(tag), i, c)
        (untimed if math.isnan(med) else timed).append(entry)
    timed.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    out = []
    while timed:
        best = timed[0][0]
        bound = best * (1.0 + margin)
        group = [e for e in timed if e[0] <= bound]
        win = min(group, key=lambda e: (e[1], e[2], e[0], e[3]))
        out.append(win[4])
        timed.remove(win)
    untimed.sort(key=lambda e: (e[2], e[1], e[3]))
    out.extend(e[4] for e in untimed)
    return out


def choose(candidates, margin=DEFAULT_MARGIN):
    """The first of ``rank(candidates, margin)``, or None when there are none."""
    r = rank(candidates, margin)
    return r[0] if r else None
