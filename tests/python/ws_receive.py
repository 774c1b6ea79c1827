"""Receives COUNT messages from a certstream WebSocket URL with the `websockets` library and prints each one, as
received, on its own line (the messages are compact JSON, which never contains a raw newline). An optional third
argument is sent as the `Authorization` header."""
import sys

from websockets.sync.client import connect

url, count = sys.argv[1], int(sys.argv[2])
headers = {"Authorization": sys.argv[3]} if len(sys.argv) > 3 else None
with connect(url, max_size=None, open_timeout=20, additional_headers=headers) as ws:
    print("OPEN", flush=True)
    for _ in range(count):
        message = ws.recv(timeout=60)
        sys.stdout.buffer.write(message.encode("utf-8") + b"\n")
    sys.stdout.flush()
