"""A stand-in for ``python -m cudnnconv.knob_sweep_worker`` that speaks its protocol with no GPU,
for tests/test_knob_sandbox_cpu.py.  argv: MODE LOG [TAG]; every request is appended to LOG.

Modes: ``ok`` (six settings eng1..eng6, eng4 wrong, the rest timed, eng6 fastest; eng5 reads back
as ``eng5_k2=5``), ``hang`` (sleeps after ``start`` of TAG), ``hang_build`` (sleeps after ``build``
of TAG), ``crash`` (exits after ``start`` of TAG), ``error`` (says why and exits after ``start`` of
TAG), ``crashall`` (exits after the ``start`` of the first setting it is not told to skip),
``crash_later`` (as ``ok`` for its first request, then as ``crashall``), ``slow_ok`` (as ``ok``
after 1.5 s before it says it is ready), ``silent`` (never says
ready), ``refuse`` (says it cannot run), ``garbage`` (a line that is not JSON after the reference).
"""
import json
import os
import sys
import time

mode, log = sys.argv[1], sys.argv[2]
target = sys.argv[3] if len(sys.argv) > 3 else None


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if mode == "silent":
    time.sleep(600)
    sys.exit(0)
if mode == "refuse":
    send({"error": "no GPU in this stand-in"})
    sys.exit(1)
if mode == "slow_ok":
    time.sleep(1.5)
send({"ready": os.getpid()})
MS = {"eng1": 0.05, "eng2": 0.04, "eng3": 0.03, "eng4": 0.02, "eng5": 0.025, "eng6": 0.01}
served = 0
for line in sys.stdin:
    req = json.loads(line)
    with open(log, "a") as f:
        f.write(json.dumps(req) + "\n")
    send({"reference": "eng1", "ms": 0.05})
    if mode == "garbage":
        sys.stdout.write("this is not JSON\n")
        sys.stdout.flush()
        time.sleep(600)
    crash_first = mode == "crashall" or (mode == "crash_later" and served > 0)
    for i in range(1, 7):
        want = "eng%d" % i
        tag = "eng5_k2=5" if i == 5 else want
        if want in req["skip"] or tag in req["skip"]:
            continue
        knobs = [[2, 5]] if i == 5 else []
        send({"build": want, "engine_index": i, "knobs": knobs})
        if want == target and mode == "hang_build":
            time.sleep(600)
        send({"start": want, "tag": tag, "engine_index": i, "knobs": knobs})
        if crash_first or (want == target and mode == "crash"):
            os._exit(3)
        if want == target and mode == "error":
            send({"error": "CUDARuntimeError: an illegal memory access was encountered"})
            os._exit(3)
        if want == target and mode == "hang":
            time.sleep(600)
        send({"ran": want, "ms": MS[want]})
        status = "wrong" if i == 4 else "timed"
        send({"result": {"tag": tag, "engine_index": i, "knobs": knobs, "status": status,
                         "ms": MS[want], "error": 0.5 if status == "wrong" else 1e-3, "workspace": 64 * i}})
    send({"done": True})
    served += 1
