"""A stand-in for ``python -m cudnnconv.knob_sweep_worker`` that speaks its protocol with no GPU,
for tests/test_knob_sandbox_cpu.py.  argv: MODE LOG [TAG]; every request is appended to LOG.

Modes: ``ok`` (six settings eng1..eng6, eng4 wrong, the rest timed, eng6 fastest), ``hang`` (sleeps
after ``start`` of TAG), ``crash`` (exits after ``start`` of TAG), ``silent`` (never says ready),
``refuse`` (says it cannot run), ``garbage`` (a line that is not JSON after the reference).
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
send({"ready": os.getpid()})
MS = {"eng1": 0.05, "eng2": 0.04, "eng3": 0.03, "eng4": 0.02, "eng5": 0.025, "eng6": 0.01}
for line in sys.stdin:
    req = json.loads(line)
    with open(log, "a") as f:
        f.write(json.dumps(req) + "\n")
    send({"reference": "eng1", "ms": 0.05})
    if mode == "garbage":
        sys.stdout.write("this is not JSON\n")
        sys.stdout.flush()
        time.sleep(600)
    for i in range(1, 7):
        tag = "eng%d" % i
        if tag in req["skip"]:
            continue
        send({"start": tag, "engine_index": i, "knobs": []})
        if tag == target and mode == "hang":
            time.sleep(600)
        if tag == target and mode == "crash":
            os._exit(3)
        status = "wrong" if tag == "eng4" else "timed"
        send({"result": {"tag": tag, "engine_index": i, "knobs": [[2, i]] if i > 4 else [], "status": status,
                         "ms": MS[tag], "error": 0.5 if status == "wrong" else 1e-3, "workspace": 64 * i}})
    send({"done": True})
