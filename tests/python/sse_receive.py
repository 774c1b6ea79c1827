"""Receives COUNT events from a certstream server-sent events URL with `httpx-sse` and prints each one, as received,
on its own line: `<id>\t<data>` (the data is compact JSON, which never contains a raw newline). A LAST_EVENT_ID
argument is sent as `Last-Event-ID`, as a reconnecting `EventSource` does. `OPEN` is printed once the response
has started."""
import sys

import httpx
from httpx_sse import connect_sse

url, count = sys.argv[1], int(sys.argv[2])
headers = {"Last-Event-ID": sys.argv[3]} if len(sys.argv) > 3 else {}
with httpx.Client(timeout=httpx.Timeout(60.0, connect=20.0)) as client:
    with connect_sse(client, "GET", url, headers=headers) as source:
        source.response.raise_for_status()
        print("OPEN", flush=True)
        received = 0
        for event in source.iter_sse():
            # The library also yields the block that only sets `retry:`; `EventSource` dispatches no event
            # without data.
            if not event.data:
                continue
            sys.stdout.write(f"{event.id}\t{event.data}\n")
            sys.stdout.flush()
            received += 1
            if received == count:
                break
