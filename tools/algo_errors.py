"""Every candidate's relative error against the float64 reference, for one problem.

    PYTHONPATH=pyx python3 tools/algo_errors.py [--dtype float32] [--tf32]

A diagnostic (not a test): it runs each candidate the search would consider
(both engines, benchmark on) on fresh random data, and prints its error and
the float32 tolerance the GPU suite uses, so that an algorithm whose
numerics fall outside a tolerance is seen by name.
"""
import argparse
import os
import sys

import cupy

import cudnnconv
from cudnnconv import search
from cudnnconv.explain import intercept_search

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "gpu"))
import reference as ref  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--x", default="16,64,48,48")
    p.add_argument("--w", default="64,64,5,5")
    p.add_argument("--padding", type=int, default=2)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--direction", default="forward", choices=("forward", "backward_data", "backward_filter"))
    a = p.parse_args()
    xs = tuple(int(v) for v in a.x.split(","))
    ws = tuple(int(v) for v in a.w.split(","))
    x, w = ref.random(xs, a.dtype), ref.random(ws, a.dtype)
    gy = ref.random(ref.conv_out_shape(xs, ws, padding=a.padding), a.dtype)
    if a.direction == "forward":
        expect = ref.conv(x, w, padding=a.padding)
        call = lambda out, **kw: cudnnconv.conv(x, w, padding=a.padding, out=out, **kw)
    elif a.direction == "backward_data":
        expect = ref.conv_backward_input(xs, w, gy, padding=a.padding)
        call = lambda out, **kw: cudnnconv.conv_backward_input(xs, w, gy, padding=a.padding, out=out, **kw)
    else:
        expect = ref.conv_backward_weight(x, ws, gy, padding=a.padding)
        call = lambda out, **kw: cudnnconv.conv_backward_weight(x, ws, gy, padding=a.padding, out=out, **kw)
    tol = ref.tolerance(a.dtype, tf32=a.tf32)
    for engine in cudnnconv.build_info()["engines"]:
        i = 0
        while True:
            ran = []

            def handler(direction, args, cache, key, opts, i=i):
                cands = list(direction.candidates(args, opts))
                if i >= len(cands):
                    raise IndexError
                search.run_choice(direction, args, cands[i])
                ran.append(cands[i])
                return cands[i]
            cudnnconv.clear_cache()
            out = ref.poisoned(expect.shape, a.dtype)
            try:
                with intercept_search(handler):
                    call(out, engine=engine, benchmark=True, allow_tf32=a.tf32)
            except IndexError:
                break
            except Exception as e:
                print("%s #%d failed: %s" % (engine, i, e))
                i += 1
                continue
            c = ran[0]
            err = ref.rel_error(out, expect)
            notes = getattr(c, "notes", ())
            print("%-7s #%-2d %-40s err %.3e %s %s" % (engine, i, c.describe(), err,
                                                      "OK " if err <= tol else "OVER", " ".join(notes)))
            i += 1
    print("tolerance", tol, "direction", a.direction, "x", xs, "w", ws)


if __name__ == "__main__":
    main()
