"""The persistent, versioned, shareable tuning cache (policy tier).

``save_tuning(path)`` writes every engine's cached choices to a JSON file;
``load_file(path)`` puts the valid ones back into the engines' caches (the
public ``cudnnconv.load_tuning`` is cudnnconv.warmup's, which can also warm
them up: this module runs nothing).
With ``CUDNNCONV_TUNING_CACHE=path`` in the environment, the file is loaded
at the first cache lookup and every new choice is merged into it as soon as
the search makes it.

File format (version 1; see docs/tuning_cache.md)::

    {
      "format": "cudnnconv-tuning",
      "version": 1,
      "environments": {
        "<env id>": {"cudnn_version": 91900, "gpu_name": "NVIDIA H100 80GB HBM3",
                     "compute_capability": [9, 0], "sm_count": 132,
                     "cache_format": 1}
      },
      "entries": [
        {"env": "<env id>", "engine": "legacy",
         "key": {"op": "forward", "engine": "legacy", "device": 0, "dtype": 0,
                 "input_shape": [8, 64, 56, 56], ..., "workspace_limit": null,
                 "extra": []},
         "record": {"algo": 1, "math_type": 3, "workspace": 0, "time_ms": 0.05,
                    "deterministic": true, "benchmarked": true}}
      ]
    }

* ``key`` holds every ProblemKey field by name; JSON arrays become tuples
  again on load (every sequence in a key is a tuple), so keys round-trip
  exactly.  ``extra`` may nest tuples of ints, floats, strs, bools and null.
* ``environments`` maps an id (any string; the writer uses a digest of the
  block) to the environment the entries were measured in: the exact cuDNN
  version, the GPU's name, compute capability and SM count, and cudnnconv's
  cache-format version (``CACHE_FORMAT``).  An entry is used only when the
  environment of ``key.device`` in this process equals its block exactly;
  otherwise it is skipped with a one-line debug note on the 'cudnnconv'
  logger (the file is shared between machines and cuDNN versions).
* ``record`` is engine-specific, written and read by the engine's codec:
  ``choice_to_record(choice[, key]) -> dict or None`` and
  ``choice_from_record(record[, key]) -> choice or None``.  The legacy codec
  lives here; the graph engine's is looked up as those two functions in
  ``cudnnconv.engines.graph``.  Graph records are expected to carry
  ``plan_json`` (a string, where the plan serialises), ``tag``, ``knobs``
  and ``workspace``; entries of an engine without a codec here are skipped
  (and kept in the file).

Loading never crashes, never blocks and never uses a wrong entry.  A file
that is not valid JSON (NaN and Infinity included; nesting too deep for the
parser too), is larger than MAX_FILE_BYTES, has another format or a version
other than the int 1 (1.0 is not 1), or has the wrong structure is rejected
whole, with ``warnings.warn``; so is a path that is not a regular file (a
FIFO, device, directory or socket: only regular files are opened, and
without blocking).  An entry with wrong types, out-of-range values (shapes,
huge ints, floats that parsed as inf, a workspace of 1 TiB or more or over
the key's workspace_limit, an algorithm that does not exist, a math type
that breaks the key's flags), an unknown engine, or a plan JSON nested too
deep or naming another SM count or cuDNN version than its environment, is
rejected (one warning per load names how many and why) and nothing of it is
loaded.  Each engine's record checks live beside it (engines/legacy_record.py,
engines/graph_record.py); the engine registry registers them.  ``load_file`` returns how many entries the
caches hold after it, not how many the file has.  Files are written as
strict JSON: a record holding NaN or an infinity is never written.

Engines whose caches have no observer lists (the graph engine keeps one
cache per thread, and answers hits before the shared search) use two calls
instead: ``stored_record(key)`` on a miss (the loaded record, to decode in
the calling thread) and ``record_choice(key, choice)`` after a search.

Sharing: a write takes an exclusive ``fcntl.flock`` on ``<path>.lock``,
re-reads the current file, merges (entries already there are kept unless the
writer has one for the same environment and key), writes a temporary file in
the same directory, fsyncs it and ``os.replace``-s it over the file.  So
readers (which take no lock) only ever see a whole file, and concurrent
writers lose no entries.  A corrupt file is replaced, with a warning; a
path that is not a regular file is never written over (save_tuning raises
TuningFileError, CUDNNCONV_TUNING_CACHE warns).
"""
import fcntl
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import warnings

from cudnnconv import params
from cudnnconv.records import (BadEntry, as_bool, as_float, as_int, as_str, canonical_json, int_tuple,
                               key_to_json, no_json_constant, short_repr)

FORMAT = "cudnnconv-tuning"
FORMAT_VERSION = 1          # the file's layout
CACHE_FORMAT = 1            # what keys and records mean (bump when ProblemKey or a record changes meaning)
ENV_VAR = "CUDNNCONV_TUNING_CACHE"

MAX_FILE_BYTES = 64 << 20
MAX_ENTRIES = 200_000
MAX_ENVIRONMENTS = 256
MAX_DIM = 1 << 40
MAX_EXTRA_ITEMS = 64
MAX_EXTRA_DEPTH = 4

OPS = ("forward", "fused", "epilogue", "dgrad_act", "backward_data", "backward_filter")
ENGINES = ("legacy", "graph")
LAYOUTS = (params.NCHW, params.CHANNELS_LAST)
DTYPES = frozenset(params._CUDNN_DTYPE.values())
_MATH_TYPES = (0, 1, 2, 3)

_logger = logging.getLogger("cudnnconv")


class TuningFileError(ValueError):
    """The file as a whole cannot be used (the message says why)."""


class _NotRegularFile(TuningFileError):
    """The path names a FIFO, device, directory or socket: never read, never replaced."""


# ---------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------

_env_memo = {}
_env_lock = threading.Lock()


def device_environment(device):
    """The environment block for ``device`` in this process (a dict).

    The one place that asks the GPU (cupy.cuda.runtime.getDeviceProperties)
    and cuDNN; CPU tests monkeypatch this function.  Memoised per device.
    """
    device = int(device)
    with _env_lock:
        env = _env_memo.get(device)
    if env is not None:
        return dict(env)
    import cupy
    from cudnnconv.core import build
    props = cupy.cuda.runtime.getDeviceProperties(device)
    name = props["name"]
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    env = {"cudnn_version": int(build.runtime_cudnn_version()),
           "gpu_name": str(name).rstrip("\x00"),
           "compute_capability": [int(props["major"]), int(props["minor"])],
           "sm_count": int(props["multiProcessorCount"]),
           "cache_format": CACHE_FORMAT}
    with _env_lock:
        _env_memo[device] = env
    return dict(env)


def _env_here(device, memo):
    """device_environment(device), or None where it cannot be had (memoised in ``memo``)."""
    if device not in memo:
        try:
            memo[device] = device_environment(device)
        except Exception as e:
            _logger.debug("tuning cache: no environment for device %d (%s: %s)", device, type(e).__name__, e)
            memo[device] = None
    return memo[device]


def _check_env_block(env):
    if not isinstance(env, dict) or set(env) != {"cudnn_version", "gpu_name", "compute_capability",
                                                 "sm_count", "cache_format"}:
        raise BadEntry("environment block must have exactly cudnn_version, gpu_name, compute_capability, "
                        "sm_count, cache_format")
    as_int(env["cudnn_version"], "cudnn_version", 0, 10 ** 9)
    as_str(env["gpu_name"], "gpu_name")
    cc = env["compute_capability"]
    if not isinstance(cc, list) or len(cc) != 2:
        raise BadEntry("compute_capability must be [major, minor]")
    for v in cc:
        as_int(v, "compute_capability", 0, 1000)
    as_int(env["sm_count"], "sm_count", 1, 1 << 20)
    as_int(env["cache_format"], "cache_format", 0, 1 << 20)
    return env


def env_id(env):
    """A short stable id for an environment block (a digest of its canonical JSON)."""
    return hashlib.sha256(canonical_json(env).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# Checked values
# ---------------------------------------------------------------------------

def _strict_json(obj, what):
    """Raise BadEntry unless ``obj`` is strict JSON: no NaN or infinity anywhere in it.

    A float beyond 1e308 in the file parses as inf; written back it would be
    ``Infinity``, which is not JSON, and every reader would reject the whole
    file.  So a part holding one is rejected on reading, and never written.
    """
    try:
        json.dumps(obj, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as e:
        raise BadEntry("%s is not strict JSON (%s)" % (what, str(e)[:60])) from None


def _extra_from_json(v, depth=0):
    if depth > MAX_EXTRA_DEPTH:
        raise BadEntry("extra nests too deep")
    if isinstance(v, list):
        if len(v) > MAX_EXTRA_ITEMS:
            raise BadEntry("extra has too many items")
        return tuple(_extra_from_json(x, depth + 1) for x in v)
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return as_int(v, "extra", -(1 << 62), 1 << 62)
    if isinstance(v, float):
        return as_float(v, "extra", -1e300, 1e300)
    if isinstance(v, str):
        return as_str(v, "extra")
    raise BadEntry("extra holds a %s" % type(v).__name__)


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

def key_from_json(d):
    """The ProblemKey a dict written by key_to_json stands for, checked; BadEntry otherwise."""
    if not isinstance(d, dict) or set(d) != set(params.ProblemKey._fields):
        raise BadEntry("key must have exactly the fields %s" % (", ".join(params.ProblemKey._fields),))
    op = d["op"]
    if op not in OPS:
        raise BadEntry("unknown op %s" % short_repr(op))
    engine = d["engine"]
    if engine not in ENGINES:
        raise BadEntry("unknown engine %s in key" % short_repr(engine))
    device = as_int(d["device"], "device", 0, 1023)
    dtype = as_int(d["dtype"], "dtype", 0, 1000)
    if dtype not in DTYPES:
        raise BadEntry("unknown dtype code %d" % dtype)
    xs = int_tuple(d["input_shape"], "input_shape", 3, 5, 0, MAX_DIM)
    ws = int_tuple(d["weight_shape"], "weight_shape", 3, 5, 0, MAX_DIM)
    if len(xs) != len(ws):
        raise BadEntry("input_shape and weight_shape differ in rank")
    nsp = len(xs) - 2
    layout = d["layout"]
    if layout not in LAYOUTS:
        raise BadEntry("unknown layout %s" % short_repr(layout))
    padding = int_tuple(d["padding"], "padding", nsp, nsp, 0, MAX_DIM)
    stride = int_tuple(d["stride"], "stride", nsp, nsp, 1, MAX_DIM)
    dilation = int_tuple(d["dilation"], "dilation", nsp, nsp, 1, MAX_DIM)
    groups = as_int(d["groups"], "groups", 1, MAX_DIM)
    det = as_bool(d["deterministic"], "deterministic")
    tf32 = as_bool(d["allow_tf32"], "allow_tf32")
    limit = d["workspace_limit"]
    if limit is not None:
        limit = as_int(limit, "workspace_limit", 0, 1 << 62)
    if not isinstance(d["extra"], list):
        raise BadEntry("extra must be a list")
    extra = _extra_from_json(d["extra"])
    return params.ProblemKey(op, engine, device, dtype, xs, ws, layout, padding, stride, dilation, groups,
                             det, tf32, limit, extra)


# ---------------------------------------------------------------------------
# Engine codecs
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The engines, as the engine registry (cudnnconv.engine_registry) provides them: this
# module imports no engine.  ``provider(name)`` returns what the tuning cache needs
# of the engine (CACHE, choice_to_record and choice_from_record), or None where the
# build has none.
# ---------------------------------------------------------------------------

_provider = None


def set_engine_provider(provider):
    """Called once by cudnnconv.engine_registry, which imports the engines."""
    global _provider
    _provider = provider


def _engine(name):
    return None if _provider is None else _provider(name)


def _engine_caches():
    """The engines' choice caches, graph first (as cudnnconv.engine_registry.caches() lists them)."""
    return [m.CACHE for m in (_engine("graph"), _engine("legacy")) if m is not None]


def _call_codec(fn, obj, key):
    """Call a codec that takes (obj) or (obj, key)."""
    try:
        import inspect
        nparams = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        nparams = 2
    return fn(obj, key) if nparams >= 2 else fn(obj)


_CHECKS = {}        # engine name -> check_record(record, key, env), as register_record_check gave them


def register_record_check(engine, check):
    """``check(record, key, env)`` raises BadEntry for an engine's record that cannot be used (``env``
    None: the structure only); the engine registry registers each engine's."""
    _CHECKS[engine] = check


def _check_record(engine, record, key, env):
    check = _CHECKS.get(engine)
    if check is not None:
        check(record, key, env)


def codec(engine):
    """(to_record, from_record) for ``engine``, as the engine provider gives it, or None where this build
    has none."""
    mod = _engine(engine) if engine in ENGINES else None
    to_rec = getattr(mod, "choice_to_record", None)
    from_rec = getattr(mod, "choice_from_record", None)
    if callable(to_rec) and callable(from_rec):
        return (lambda c, k: _call_codec(to_rec, c, k)), (lambda r, k: _call_codec(from_rec, r, k))
    return None


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

class _Parsed:
    """A file's checked contents: environments by id and good entries."""

    def __init__(self):
        self.envs = {}          # id -> block
        self.entries = []       # (env block, key, engine, record, raw entry dict)
        self.bad = []           # reasons, one per rejected part


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_regular(mode):
    """Raise _NotRegularFile unless ``mode`` (st_mode) is a regular file's; the message names what it is."""
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "of file type %o" % stat.S_IFMT(mode))
        raise _NotRegularFile("not a regular file (%s)" % kind)


def _read_bytes(path):
    """The file's bytes, None when there is no file; _NotRegularFile when the path is not a regular file.

    A FIFO would block open() until a writer comes, and read() after it; a
    device (/dev/zero) may never end.  So the path is stat-ed first (nothing
    else is opened at all), then opened with O_NONBLOCK (a FIFO swapped in
    meanwhile cannot block the open) and checked again with fstat before a
    byte is read.  OSError (no permission, ...) goes to the caller.
    """
    try:
        _check_regular(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        _check_regular(os.fstat(fd).st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TuningFileError("larger than %d bytes" % MAX_FILE_BYTES)
    return data


def _parse(data):
    """Check the file's structure and every entry; TuningFileError when the file as a whole is bad."""
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=no_json_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise TuningFileError("not valid JSON (%s: %s)" % (type(e).__name__, str(e)[:80])) from None
    if not isinstance(doc, dict):
        raise TuningFileError("the top level is not an object")
    if doc.get("format") != FORMAT:
        raise TuningFileError("format is %s, not %r" % (short_repr(doc.get("format")), FORMAT))
    if type(doc.get("version")) is not int or doc["version"] != FORMAT_VERSION:
        # Exactly the int: 1.0, 1e0 and true equal 1 in Python but are not this layout's version number.
        raise TuningFileError("format version %s is not %d (this cudnnconv reads only version %d)"
                              % (short_repr(doc.get("version")), FORMAT_VERSION, FORMAT_VERSION))
    envs, entries = doc.get("environments"), doc.get("entries")
    if not isinstance(envs, dict) or not isinstance(entries, list):
        raise TuningFileError("'environments' must be an object and 'entries' a list")
    if len(envs) > MAX_ENVIRONMENTS or len(entries) > MAX_ENTRIES:
        raise TuningFileError("more than %d environments or %d entries" % (MAX_ENVIRONMENTS, MAX_ENTRIES))
    out = _Parsed()
    for eid, block in envs.items():
        try:
            as_str(eid, "environment id")
            out.envs[eid] = _check_env_block(block)
        except BadEntry as e:
            out.bad.append("environment %s: %s" % (short_repr(eid), e))
    for i, ent in enumerate(entries):
        try:
            if not isinstance(ent, dict) or set(ent) != {"env", "engine", "key", "record"}:
                raise BadEntry("an entry must have exactly env, engine, key, record")
            eid = ent["env"]
            if not isinstance(eid, str) or eid not in out.envs:
                raise BadEntry("unknown or bad environment id %s" % short_repr(eid))
            env = out.envs[eid]
            engine = ent["engine"]
            if engine not in ENGINES:
                raise BadEntry("unknown engine %s" % short_repr(engine))
            key = key_from_json(ent["key"])
            if key.engine != engine:
                raise BadEntry("entry engine %s but key engine %s" % (engine, key.engine))
            record = ent["record"]
            _check_record(engine, record, key, None)
            _strict_json(record, "record")                  # fields not checked here are written back as read
            out.entries.append((env, key, engine, record, ent))
        except BadEntry as e:
            out.bad.append("entry %d: %s" % (i, e))
    return out


def read_tuning_file(path):
    """The checked contents of ``path`` (a _Parsed), None when there is no file.

    Raises TuningFileError when the file as a whole is unusable.
    """
    data = _read_bytes(path)
    if data is None:
        return None
    return _parse(data)


def _warn(path, what):
    warnings.warn("cudnnconv tuning cache %s: %s" % (path, what), RuntimeWarning, stacklevel=3)


def _warn_bad_parts(path, parsed):
    if parsed.bad:
        shown = "; ".join(parsed.bad[:3]) + ("; ..." if len(parsed.bad) > 3 else "")
        _warn(path, "rejected %d bad part(s), loaded nothing from them: %s" % (len(parsed.bad), shown))


# Loading must not write back what it loads.
_quiet = threading.local()

# Every checked, environment-matched record loaded in this process, by key:
# engines whose caches are per-thread (the graph engine) deserialise from
# here in the thread that needs the plan (stored_record).
_store = {}
_store_lock = threading.Lock()


def stored_record(key):
    """The loaded record for ``key`` (a dict, already checked against this
    process's environment), or None.  With CUDNNCONV_TUNING_CACHE set, the
    first call loads the file.  For engines with per-thread caches: on a
    miss, ``choice_from_record(stored_record(key), key)`` in the calling
    thread, then put it in that thread's cache."""
    auto = _auto
    if auto is not None and not auto.loaded:
        auto.on_miss(None, key)
    with _store_lock:
        ent = _store.get(key)
    return None if ent is None else ent[1]


def forget_records(engine=None):
    """Drop the loaded records (of ``engine``, or all) from the store that
    stored_record reads: after the engine's cache is cleared, its next call
    searches (cudnnconv.clear_cache() clears the graph engine's records)."""
    with _store_lock:
        for k in [k for k, v in _store.items() if engine is None or v[0] == engine]:
            del _store[k]


def record_choice(key, choice):
    """Tell the tuning cache about a new choice (for caches without on_put
    observers, e.g. the graph engine's per-thread caches): with
    CUDNNCONV_TUNING_CACHE set it is merged into the file at once."""
    auto = _auto
    if auto is not None:
        auto.on_put(None, key, choice)


def _engine_cache(engine):
    mod = _engine("legacy" if engine == "legacy" else "graph")
    return None if mod is None else mod.CACHE


def load_file(path, *, override=False, after_load=None):
    """Load the valid entries of a tuning file into the engines' caches.

    Entries for another environment (cuDNN version, GPU name, compute
    capability, SM count, cache format) are skipped with a debug note; bad
    parts are rejected with a warning.  An entry never replaces a choice
    already in the cache unless ``override``.  Graph plans are deserialised
    now, in the calling thread.  ``after_load(keys)``, when given, is called
    with the keys of the entries kept (cudnnconv.warmup passes its warm-up:
    this module knows nothing of running a choice).

    Returns the number of entries this load put into the engines' caches
    that are still held when it returns, not the number it read: a bounded
    cache keeps only the most recent (the legacy engine's holds 4,096, so a
    file of 140,000 legacy entries loads 4,096), and a key given twice counts
    once.  A graph entry still counts when its thread's cache has let it go
    but the store keeps its record (stored_record: any thread's miss decodes
    it).  ``cudnnconv.load_tuning`` (cudnnconv.warmup) is the public form.

    Raises:
        Nothing for the file's contents: a corrupt or hostile file, or a
        path that is not a regular file (a FIFO, device, directory, socket),
        is rejected with a warning, and so is an OSError other than a
        missing file.  A missing file loads nothing.  Whatever
        ``after_load`` raises.
    """
    path = os.fspath(path)
    parsed = _read_for_load(path)
    if parsed is None:
        return 0
    _warn_bad_parts(path, parsed)
    _quiet.on = True
    try:
        put, bad, skipped = _put_entries(parsed.entries, override)
    finally:
        _quiet.on = False
    if bad:
        _warn(path, "rejected %d entr(ies): %s" % (len(bad), "; ".join(bad[:3])))
    kept = _kept(put)
    _logger.debug("tuning cache %s: put %d entries, %d kept; skipped %d", path, len(put), len(kept), skipped)
    if after_load is not None and kept:
        after_load(kept)
    return len(kept)


def _read_for_load(path):
    """read_tuning_file(path), or None with a warning when the file as a whole cannot be used."""
    try:
        return read_tuning_file(path)
    except TuningFileError as e:
        _warn(path, "rejected: %s" % e)
    except OSError as e:
        _warn(path, "could not be read: %s" % e)
    return None


def _put_entries(entries, override):
    """Put the entries of this environment into the engines' caches (and their records into the store).

    Returns ([(key, choice, cache)] in the order put, [reasons for rejected
    entries], how many were skipped).
    """
    put, bad = [], []
    skipped = 0
    memo = {}
    for env, key, engine, record, _raw in entries:
        here = _env_here(key.device, memo)
        if here != env:
            skipped += 1
            _logger.debug("tuning cache: skipped %s %s entry for %s (measured with %s; here %s)",
                          engine, key.op, _key_text(key), _env_text(env), _env_text(here))
            continue
        try:
            choice, cache = _decode_entry(key, engine, record, env)
        except BadEntry as e:
            bad.append("%s: %s" % (_key_text(key), e))
            continue
        if cache is None:
            skipped += 1
        elif choice is not None and (override or cache.peek(key) is None):
            cache.put(key, choice)
            put.append((key, choice, cache))
    return put, bad, skipped


def _decode_entry(key, engine, record, env):
    """(choice or None, the engine's cache or None) for an entry of this environment; BadEntry when bad.

    Its record goes into the store first (for engines that decode there).
    """
    _check_record(engine, record, key, env)
    with _store_lock:
        # The latest load wins here: the store holds records, not choices in use.
        if len(_store) < MAX_ENTRIES or key in _store:
            _store[key] = (engine, record)
    cod = codec(engine)
    cache = _engine_cache(engine)
    if cod is None or cache is None:
        _logger.debug("tuning cache: skipped %s entry (no %s codec in this build)", engine, engine)
        return None, None
    try:
        return cod[1](record, key), cache
    except BadEntry:
        raise
    except Exception as e:          # a codec must not break loading; a failed plan is a miss
        _logger.debug("tuning cache: %s entry for %s did not load (%s: %s); it is a miss",
                      engine, _key_text(key), type(e).__name__, e)
        return None, cache


def _has_observer_lists(cache):
    """Whether ``cache`` is an AlgoCache with on_miss/on_put lists (else it reads the store on a miss)."""
    return isinstance(getattr(cache, "on_miss", None), list) and isinstance(getattr(cache, "on_put", None), list)


def _kept(put):
    """The keys of ``put`` [(key, choice, cache)] whose entry this process still holds, each once.

    Held: the choice is still in its cache (a bounded cache may have evicted
    it since; of a key put twice only the later choice is there), or the
    cache reads the store on a miss and the store has the key.  Each cache
    is gone over once, instead of a lookup per key put (a file may put 200,000).
    """
    mine = {id(choice) for _key, choice, _cache in put}          # all alive in ``put``: the ids are unique
    caches = list({id(cache): cache for _key, _choice, cache in put}.values())
    kept = dict.fromkeys(key for cache in caches for key, value in cache.items() if id(value) in mine)
    for cache in caches:
        if not _has_observer_lists(cache):
            kept.update(dict.fromkeys(key for key, _choice, c in put if c is cache and _in_store(key)))
    return list(kept)


def _in_store(key):
    with _store_lock:
        return key in _store


def _key_text(key):
    return "%s %s x%s w%s" % (key.op, key.layout, key.input_shape, key.weight_shape)


def _env_text(env):
    if env is None:
        return "no device"
    return "cuDNN %s on %s (sm_%s%s, %s SMs, cache format %s)" % (
        env.get("cudnn_version"), env.get("gpu_name"), *env.get("compute_capability", ["?", "?"]),
        env.get("sm_count"), env.get("cache_format"))


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def _records_from_caches(only=None):
    """[(env, key, engine, record)] for the engines' cached choices (or ``only``: [(key, choice)])."""
    pairs = []
    if only is not None:
        pairs = list(only)
    else:
        for mod in (_engine("legacy"), _engine("graph")):
            if mod is not None:
                pairs.extend(mod.CACHE.items())
    memo = {}
    out = []
    for key, choice in pairs:
        if not isinstance(key, params.ProblemKey) or key.engine not in ENGINES or not params.persistent(key):
            continue                     # (a spatial tile's one-sided problem stays in the process)
        cod = codec(key.engine)
        if cod is None:
            continue
        try:
            record = cod[0](choice, key)
        except Exception as e:
            _logger.debug("tuning cache: could not encode %r (%s: %s)", choice, type(e).__name__, e)
            continue
        if record is None:
            continue
        try:
            _strict_json(record, "its record")
        except BadEntry as e:            # a reader would reject the whole file
            _logger.debug("tuning cache: not saving %r: %s", choice, e)
            continue
        env = _env_here(key.device, memo)
        if env is None:
            continue
        out.append((env, key, key.engine, record))
    return out


def _identity(env, key):
    return canonical_json(env) + "|" + canonical_json(key_to_json(key))


def _refuse_special(path):
    """Raise _NotRegularFile when ``path`` exists and is not a regular file.

    A corrupt file is replaced, but a FIFO, device, directory or socket at
    the path is a mistake to report, not a file to write over (a tuning path
    of /dev/null must never replace /dev/null).
    """
    try:
        _check_regular(os.stat(path).st_mode)
    except FileNotFoundError:
        pass
    except _NotRegularFile as e:
        raise _refusal(path, e) from None


def _refusal(path, e):
    return _NotRegularFile("%s is %s; nothing is written over it" % (path, e))


def _existing_records(path):
    """{identity: (env, key, engine, record)} of the good entries in the file now (call under the lock).

    A file that is unusable as a whole is replaced, with a warning; one that
    is not a regular file raises (see _refuse_special).
    """
    try:
        parsed = read_tuning_file(path)
    except _NotRegularFile as e:          # it became one after _refuse_special looked
        raise _refusal(path, e) from None
    except TuningFileError as e:
        _warn(path, "the existing file is unusable (%s); it is replaced" % e)
        return {}
    except OSError as e:
        _warn(path, "the existing file could not be read (%s); it is replaced" % e)
        return {}
    if parsed is None:
        return {}
    return {_identity(env, key): (env, key, engine, record) for env, key, engine, record, _raw in parsed.entries}


def _document_text(items):
    """The file's JSON text for ``items`` [(env, key, engine, record)]: strict JSON, never NaN or Infinity."""
    envs = {}
    entries = []
    for env, key, engine, record in items:
        eid = env_id(env)
        envs[eid] = env
        entries.append({"env": eid, "engine": engine, "key": key_to_json(key), "record": record})
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "environments": envs, "entries": entries}
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
    if len(text) > MAX_FILE_BYTES:
        raise ValueError("the tuning file would exceed %d bytes; not written" % MAX_FILE_BYTES)
    return text


def _replace_file(path, text):
    """Write ``text`` to a temporary file next to ``path``, fsync it and rename it over ``path``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _merge_write(path, new_records):
    """Merge ``new_records`` into the file at ``path`` under its lock, atomically; the number of entries written.

    Raises _NotRegularFile, writing nothing, when the path is a FIFO,
    device, directory or socket (checked before the lock file is made, and
    again under the lock).
    """
    path = os.path.abspath(os.fspath(path))
    _refuse_special(path)
    with open(path + ".lock", "a+") as lockf:
        fcntl.flock(lockf.fileno(), fcntl.LOCK_EX)
        try:
            merged = _existing_records(path)
            for env, key, engine, record in new_records:
                merged[_identity(env, key)] = (env, key, engine, record)
            items = list(merged.values())[-MAX_ENTRIES:]
            _replace_file(path, _document_text(items))
            return len(items)
        finally:
            fcntl.flock(lockf.fileno(), fcntl.LOCK_UN)


def save_tuning(path):
    """Merge every cached choice of every engine into the tuning file at ``path``.

    Entries already in the file (from other processes, other machines) are
    kept.  Returns the number of entries the file holds afterwards; a
    corrupt file is replaced.

    Raises:
        TuningFileError: ``path`` is not a regular file (a FIFO, device,
            directory or socket); nothing is written.
        OSError: the file or its lock cannot be written (permissions, a
            full disk).
    """
    return _merge_write(path, _records_from_caches())


# ---------------------------------------------------------------------------
# CUDNNCONV_TUNING_CACHE: load at first use, append as found
# ---------------------------------------------------------------------------

class _AutoFile:
    """Connects the engines' caches to one file: loads it on the first cache
    miss, merges every new choice into it."""

    def __init__(self, path, after_load=None):
        self.path = path
        self.after_load = after_load
        self.loaded = False
        self.lock = threading.Lock()
        self.caches = []

    def attach(self, caches):
        for c in caches:
            # Only caches with observer lists (AlgoCache); the graph engine's
            # per-thread caches call stored_record/record_choice instead.
            if c not in self.caches and _has_observer_lists(c):
                self.caches.append(c)
                c.on_miss.append(self.on_miss)
                c.on_put.append(self.on_put)

    def detach(self):
        for c in self.caches:
            for lst, fn in ((c.on_miss, self.on_miss), (c.on_put, self.on_put)):
                while fn in lst:
                    lst.remove(fn)
        self.caches = []

    def on_miss(self, cache, key):
        if self.loaded:
            return
        with self.lock:              # other threads wait for the load, then find its entries
            if self.loaded:
                return
            try:
                load_file(self.path, after_load=self.after_load)
            finally:
                self.loaded = True

    def on_put(self, cache, key, value):
        if getattr(_quiet, "on", False):
            return
        records = _records_from_caches(only=[(key, value)])
        if records:
            try:
                _merge_write(self.path, records)
            except Exception as e:
                _warn(self.path, "could not add an entry (%s: %s)" % (type(e).__name__, e))


_auto = None


def enable_autosave(path, after_load=None):
    """Load ``path`` at the first cache lookup and merge new choices into it
    (what CUDNNCONV_TUNING_CACHE does); ``after_load`` as for ``load_file``.
    ``None`` turns it off."""
    global _auto
    if _auto is not None:
        _auto.detach()
        _auto = None
    if path:
        _auto = _AutoFile(os.path.abspath(os.fspath(path)), after_load)
        _auto.attach(_engine_caches())
    return _auto


def install_from_environment(after_load=None):
    """CUDNNCONV_TUNING_CACHE=path: ``enable_autosave(path, after_load)``; a
    path that cannot be used is a RuntimeWarning, not an import error."""
    path = os.environ.get(ENV_VAR)
    if path:
        try:
            enable_autosave(path, after_load)
        except Exception as e:
            warnings.warn("cudnnconv: %s=%s could not be used: %s" % (ENV_VAR, path, e), RuntimeWarning)
