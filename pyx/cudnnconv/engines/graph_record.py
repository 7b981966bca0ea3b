"""The graph engine's tuning record, checked beside its engine: what a record's fields and its plan
JSON may hold.  The codec itself (choice_to_record, choice_from_record) is the engine's own
(engines/graph.pyx); the engine registry (cudnnconv.engine_registry) registers ``check_record`` with the
tuning cache.  Pure Python: it imports no engine, so a build without the graph engine still checks
the graph entries of a file it keeps."""
import json

from cudnnconv import errata
from cudnnconv.records import (MAX_PLAN_JSON, WORKSPACE_CAP, BadEntry, as_float, as_int, as_str, no_json_constant,
                               short_repr)

MAX_PLAN_DEPTH = 64         # nesting levels of a plan JSON (a level: one list or object)
MAX_KNOBS = 64              # [type, value] pairs of a graph record (above every cuDNN 9 knob count)

_SM_KEYS = ("smcount", "sm_count", "multiprocessorcount", "numsms", "num_sms", "nsms", "sms")
_VERSION_KEYS = ("cudnnversion", "cudnn_version")
_SM_NAMES = frozenset(s.replace("_", "") for s in _SM_KEYS)          # compared without '_' and '-'
_VERSION_NAMES = frozenset(s.replace("_", "") for s in _VERSION_KEYS)


def _plan_fields(plan):
    """Every (name, value) pair of every object in a parsed plan JSON, at any depth.

    Raises BadEntry when the plan nests deeper than MAX_PLAN_DEPTH levels
    (each list or object is one level): a field below the bound would escape
    the SM-count and cuDNN-version checks, so such a plan is rejected, not
    walked part way.  Iterative, so no depth of input can exhaust the stack.
    """
    fields = []
    todo = [(plan, 1)]
    while todo:
        obj, depth = todo.pop()
        if isinstance(obj, dict):
            fields.extend(obj.items())
            children = obj.values()
        elif isinstance(obj, list):
            children = obj
        else:
            continue
        if depth > MAX_PLAN_DEPTH:
            raise BadEntry("plan_json nests deeper than %d levels" % MAX_PLAN_DEPTH)
        todo.extend((v, depth + 1) for v in children)
    return fields


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_knobs(knobs):
    """Raise BadEntry unless ``knobs`` is a list of at most MAX_KNOBS [type, value] int pairs in cuDNN's ranges."""
    if not isinstance(knobs, list) or len(knobs) > MAX_KNOBS:
        raise BadEntry("knobs must be a list of at most %d [type, value] pairs" % MAX_KNOBS)
    for kv in knobs:
        if not isinstance(kv, list) or len(kv) != 2:
            raise BadEntry("a knob must be a [type, value] pair, got %s" % short_repr(kv))
        as_int(kv[0], "knob type", 0, (1 << 31) - 1)
        as_int(kv[1], "knob value", -(1 << 62), (1 << 62) - 1)


def check_record(record, key, env=None):
    """Structural checks of a graph record, done whatever the graph codec does.

    A ``plan_json`` must be a string of at most MAX_PLAN_JSON characters that
    parses as JSON nested at most MAX_PLAN_DEPTH levels deep, and any SM-count
    or cuDNN-version field inside it, at any depth, must equal the entry's
    environment (a plan JSON edited to another SM count is rejected here, not
    left to cuDNN's NOT_SUPPORTED_ARCH_MISMATCH).  ``time_ms`` must be finite
    (and so must ``issue_ms``), and ``knobs`` pairs of ints in range, as the graph codec wants them: a
    number it would refuse later is rejected now, with a warning.  With
    ``env`` None only the structure is checked: the tuning cache checks an
    entry against its environment only once that environment is this
    process's (an entry for another environment is skipped quietly, whatever
    it holds).
    """
    if not isinstance(record, dict) or len(record) > 64:
        raise BadEntry("graph record must be a dict of at most 64 fields")
    if "workspace" in record:
        ws = as_int(record["workspace"], "workspace", 0, WORKSPACE_CAP - 1)
        if key.workspace_limit is not None and ws > key.workspace_limit:
            raise BadEntry("workspace %d exceeds the key's workspace_limit %d" % (ws, key.workspace_limit))
    if "tag" in record:
        as_str(record["tag"], "tag", 4096)
    for f in ("time_ms", "issue_ms"):
        if f in record:
            as_float(record[f], f, -1.0, 1e9)
    if "knobs" in record:
        _check_knobs(record["knobs"])
    if "engine_index" in record:
        idx = as_int(record["engine_index"], "engine_index", 0, (1 << 31) - 1)
        why = errata.graph_reason(key.op, idx, key.dtype, key.allow_tf32)
        if why is not None:
            raise BadEntry(why)
    if env is not None and "sm_count" in record and record["sm_count"] != env["sm_count"]:
        raise BadEntry("record sm_count %s != environment %d" % (short_repr(record["sm_count"]), env["sm_count"]))
    plan = record.get("plan_json")
    if plan is not None:
        as_str(plan, "plan_json", MAX_PLAN_JSON)
        try:
            parsed = json.loads(plan, parse_constant=no_json_constant)
        except (ValueError, RecursionError) as e:
            raise BadEntry("plan_json is not valid JSON (%s)" % type(e).__name__)
        fields = _plan_fields(parsed)           # the depth bound is structure: checked for every environment
        if env is not None:
            _check_plan_env(fields, env)


def _check_plan_env(fields, env):
    """Raise BadEntry when a plan field names an SM count or cuDNN version other than ``env``'s.

    Any number counts (7.0 is an SM count of 7 as much as 7 is; 1e400 parses as inf).
    """
    for k, v in fields:
        name = str(k).lower().replace("-", "").replace("_", "")
        if name in _SM_NAMES and _is_number(v) and v != env["sm_count"]:
            raise BadEntry("plan_json names %s=%s but the environment has sm_count %d"
                            % (k, short_repr(v), env["sm_count"]))
        if name in _VERSION_NAMES and _is_number(v) and v != env["cudnn_version"]:
            raise BadEntry("plan_json names %s=%s but the environment has cuDNN %d"
                            % (k, short_repr(v), env["cudnn_version"]))
