"""Errata: algorithms whose results break what the flags promise (policy tier, pure).

``allow_tf32=False`` promises float32 results computed in full float32
(FMA) precision.  Some legacy algorithms report FMA_MATH yet compute at
TF32-like precision.  On an H100 with cuDNN 9.19, ``tools/algo_errors.py``
(every candidate of one problem against the float64 reference) measured:

* legacy WINOGRAD_NONFUSED, FMA_MATH, 16x64x48x48 input, 64x64x5x5 filter,
  padding 2: relative error 8.8e-4 forward (algorithm 7), 8.8e-4 backward
  data (5), 2.4e-3 backward filter (5), where every other algorithm gives
  1e-7 to 1e-6 and the float32 tolerance is 1e-5.  With a 3x3 filter it
  stays under 1e-5 but is still 5-20x worse than the rest (1.7e-6, 9.2e-6);
* graph engine 17 for backward filter (the same kernels; its config
  carries no WINOGRAD note): 2.4e-3 on the 5x5 problem.

cudnnFind and the heuristics offer them as FMA results, and they are often
the fastest, so without this rule a benchmarking search with
allow_tf32=False returned TF32-accurate results (GPU test
test_forward_oom_fallback[legacy] failed whenever Find ranked it first).
The searches exclude them for every filter size (explain() shows the
reason), and a tuning-file record that names one for such a key is
rejected.  With allow_tf32=True their results meet the TF32 tolerance and
they stay candidates.
"""

_CUDNN_DATA_FLOAT = 0

_NONFUSED = "WINOGRAD_NONFUSED computes float32 at TF32-like precision (rel. error %s vs <1e-6, H100, cuDNN 9.19)"

# (op, legacy algorithm id) -> what was measured.
LEGACY_STRICT_FP32 = {
    ("forward", 7): _NONFUSED % "8.8e-4",
    ("fused", 7): _NONFUSED % "8.8e-4",
    ("backward_data", 5): _NONFUSED % "8.8e-4",
    ("backward_filter", 5): _NONFUSED % "2.4e-3",
}

# (op, graph engine global index) -> what was measured.
GRAPH_STRICT_FP32 = {
    ("backward_filter", 17): "engine 17 (Winograd, non-fused) computes float32 at TF32-like precision "
                             "(rel. error 2.4e-3 vs <1e-6, H100, cuDNN 9.19)",
}


def _reason(table, op, ident, dtype_code, allow_tf32):
    if dtype_code != _CUDNN_DATA_FLOAT or allow_tf32:
        return None
    why = table.get((op, int(ident)))
    return None if why is None else "errata: %s; excluded for float32 with allow_tf32=False" % why


def legacy_reason(op, algo, dtype_code, allow_tf32):
    """Why the legacy ``algo`` must not run ``op`` with these flags, or None."""
    return _reason(LEGACY_STRICT_FP32, op, algo, dtype_code, allow_tf32)


def graph_reason(op, engine_index, dtype_code, allow_tf32):
    """Why graph engine ``engine_index`` must not run ``op`` with these flags, or None."""
    return _reason(GRAPH_STRICT_FP32, op, engine_index, dtype_code, allow_tf32)
