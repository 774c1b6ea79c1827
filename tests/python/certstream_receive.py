"""Receives COUNT messages with the PyPI `certstream` library (`certstream.listen_for_events`) and prints each one
re-serialized as compact JSON, so the test can compare it with the bytes the server published."""
import json
import os
import sys

import certstream

url, count = sys.argv[1], int(sys.argv[2])
received = 0


def on_message(message, context):
    global received
    line = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    sys.stdout.buffer.write(line.encode("utf-8") + b"\n")
    received += 1
    if received == count:
        sys.stdout.flush()
        # listen_for_events reconnects forever: leave from inside the callback.
        os._exit(0)


certstream.listen_for_events(on_message, url, setup_logger=False)
