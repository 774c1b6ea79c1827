"""Closing handshakes with the real client libraries, driven by tests/server_python.rs.

client-close READS URL...: on every URL, 10 `websockets` (asyncio) clients and one PyPI `certstream` client
    (websocket-client underneath) read READS messages, then close; one JSON line per client:
    {"client": ..., "code": <close code the server sent, or null>, "seconds": <time close() took>}.
shutdown N READS URL...: N `websockets` clients spread over the URLs read READS messages each and then stop reading
    (their library pauses the socket once 16 messages are queued), print READY, and wait for a line on stdin; then
    they read again until the server's close and print one JSON line: {"codes": {code: count}}.
"""
import asyncio
import json
import sys
import threading
import time

from websockets.asyncio.client import connect


async def read_then_close(url, reads):
    async with connect(url, max_size=None, open_timeout=20, close_timeout=5) as ws:
        for _ in range(reads):
            await asyncio.wait_for(ws.recv(), 30)
        started = time.monotonic()
        await ws.close()
        code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None
        return {"client": "websockets " + url, "code": code, "seconds": time.monotonic() - started}


def certstream_read_then_close(url, reads, out):
    from certstream.core import CertStreamClient

    state = {"received": 0, "code": None, "started": None}

    def on_message(message, context):
        state["received"] += 1
        if state["received"] == reads:
            state["started"] = time.monotonic()
            client.close(timeout=5)

    client = CertStreamClient(on_message, url)
    client.on_close = lambda _ws, code, reason: state.update(code=code)
    client.run_forever()
    seconds = time.monotonic() - state["started"] if state["started"] else None
    out.append({"client": "certstream " + url, "code": state["code"], "seconds": seconds})


async def client_close(reads, urls):
    threads, certstream_results = [], []
    for url in urls:
        thread = threading.Thread(target=certstream_read_then_close, args=(url, reads, certstream_results))
        thread.start()
        threads.append(thread)
    results = await asyncio.gather(*[read_then_close(url, reads) for url in urls for _ in range(10)])
    for thread in threads:
        thread.join(30)
    for result in list(results) + certstream_results:
        print(json.dumps(result), flush=True)


async def shutdown(n, reads, urls):
    ready = asyncio.Event()
    resume = asyncio.Event()
    count = {"ready": 0}
    codes = {}

    async def one(url):
        async with connect(url, max_size=None, open_timeout=20, close_timeout=5) as ws:
            for _ in range(reads):
                await asyncio.wait_for(ws.recv(), 30)
            count["ready"] += 1
            if count["ready"] == n:
                ready.set()
            await resume.wait()
            try:
                async for _ in ws:
                    pass
            except Exception:
                pass
            code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None
            codes[code] = codes.get(code, 0) + 1

    tasks = [asyncio.create_task(one(urls[i % len(urls)])) for i in range(n)]
    await ready.wait()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    resume.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    print(json.dumps({"codes": codes}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "client-close":
        asyncio.run(client_close(int(sys.argv[2]), sys.argv[3:]))
    else:
        asyncio.run(shutdown(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
