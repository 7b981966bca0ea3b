"""The legacy engine's tuning record: a LegacyChoice to a JSON-able dict and back, beside its engine.

The engine registry (cudnnconv.engine_registry) hands these to the tuning cache: the codec as the
legacy engine's choice_to_record / choice_from_record, ``check_record`` through
``tuning.register_record_check``.  The tuning cache checks the file, the environment and the key,
this module the record itself.  ``check_record`` imports no engine, so a build without the legacy
engine still checks the legacy entries of a file it keeps (and shares)."""
import math

from cudnnconv import errata
from cudnnconv.records import CUDNN_DATA_FLOAT, FMA_MATH, WORKSPACE_CAP, BadEntry, as_bool, as_float, as_int

ALGO_COUNT = {"forward": 8, "fused": 8, "backward_data": 6, "backward_filter": 7}
FIELDS = {"algo", "math_type", "workspace", "time_ms", "deterministic", "benchmarked"}
OPTIONAL = {"issue_ms"}         # the host-aware search's issue time (files written before it have none)


def to_record(choice, key=None):
    """A LegacyChoice as a record dict, or None for anything else."""
    from cudnnconv.engines.legacy import LegacyChoice      # the codec needs the engine; the check does not
    if not isinstance(choice, LegacyChoice):
        return None
    return {"algo": choice.algo, "math_type": choice.math_type, "workspace": choice.workspace,
            "time_ms": choice.time_ms if math.isfinite(choice.time_ms) else -1.0,
            "issue_ms": choice.issue_ms if math.isfinite(choice.issue_ms) and choice.issue_ms >= 0 else -1.0,
            "deterministic": choice.deterministic, "benchmarked": choice.benchmarked}


def check_record(record, key, env=None):
    """Raise BadEntry unless ``record`` is a valid legacy record for ``key`` (in any environment)."""
    if not isinstance(record, dict) or not FIELDS <= set(record) <= FIELDS | OPTIONAL:
        raise BadEntry("legacy record must have exactly %s (and optionally %s)"
                       % (", ".join(sorted(FIELDS)), ", ".join(sorted(OPTIONAL))))
    as_int(record["algo"], "algo", 0, ALGO_COUNT[key.op] - 1)
    if key.op == "backward_filter" and record["algo"] == 4:
        raise BadEntry("backward_filter WINOGRAD (4) is not an algorithm cudnnconv runs")
    math_type = as_int(record["math_type"], "math_type", 0, 3)
    ws = as_int(record["workspace"], "workspace", 0, WORKSPACE_CAP - 1)
    if key.workspace_limit is not None and ws > key.workspace_limit:
        raise BadEntry("workspace %d exceeds the key's workspace_limit %d" % (ws, key.workspace_limit))
    as_float(record["time_ms"], "time_ms", -1.0, 1e9)
    if "issue_ms" in record:
        as_float(record["issue_ms"], "issue_ms", -1.0, 1e9)
    det = as_bool(record["deterministic"], "deterministic")
    as_bool(record["benchmarked"], "benchmarked")
    if key.deterministic and not det:
        raise BadEntry("a non-deterministic algorithm for a deterministic=True key")
    if key.dtype == CUDNN_DATA_FLOAT and not key.allow_tf32 and math_type != FMA_MATH:
        raise BadEntry("float32 with allow_tf32=False needs FMA math, got math type %d" % math_type)
    why = errata.legacy_reason(key.op, record["algo"], key.dtype, key.allow_tf32)
    if why is not None:
        raise BadEntry(why)


def from_record(record, key):
    """The LegacyChoice a record stands for; the tuning cache ran ``check_record`` on it first."""
    from cudnnconv.engines.legacy import LegacyChoice
    choice = LegacyChoice(key.op, record["algo"], record["math_type"], record["workspace"], record["time_ms"],
                          record["deterministic"], record["benchmarked"])
    choice.issue_ms = float(record.get("issue_ms", -1.0))
    return choice
