"""A bench worker process: ``python -m fastmsg._bench.worker CPU`` (CPU: a number, or - for none).

It pins itself to CPU before anything else starts a thread, then runs one command per JSON line
read from stdin and answers with JSON lines on stdout: {"event": "ready", "endpoint": ...} once
a serving side is bound, then {"event": "done", "result": {...}} or {"event": "error", ...}.
It exits at the end of stdin, so it never outlives the runner by more than one bounded run."""

import os
import sys


def _pin(arg):
    if arg != "-":
        os.sched_setaffinity(0, {int(arg)})


def main(argv):
    _pin(argv[0])
    import importlib
    import json
    import traceback

    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write to the answer channel

    def say(**event):
        out.write(json.dumps(event) + "\n")

    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            peer = importlib.import_module(f"fastmsg._bench.peer_{cmd['peer']}")
            if cmd["op"] == "serve":
                result = peer.serve(cmd["spec"], lambda endpoint: say(event="ready", endpoint=endpoint))
            else:
                result = peer.drive(cmd["spec"], cmd["endpoint"])
            say(event="done", result=result)
        except AssertionError as e:
            say(event="error", error=str(e))
        except Exception as e:
            say(event="error", error=f"{type(e).__name__}: {e}", detail=traceback.format_exc())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
