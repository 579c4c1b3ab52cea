"""POST prepared message bodies to a coordinator over several keep-alive connections.

Run by ``benchmarks/run.py`` in its own process (so that the client does not share the
coordinator's GIL): ``python -I _post_client.py URL FILE CONNECTIONS``. ``FILE`` holds the
bodies, each prefixed by its length (u32, big endian). Prints one JSON line: the wall time
from the first request to the last response, and the status codes.
"""

from __future__ import annotations

import http.client
import json
import struct
import sys
import threading
import time
import urllib.parse
from collections import Counter


def main() -> int:
    url, path, connections = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, "rb") as f:
        data = f.read()
    bodies = []
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        bodies.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    parts = urllib.parse.urlsplit(url)
    conns = [
        http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        for _ in range(connections)
    ]
    for conn in conns:
        conn.connect()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    queue = list(reversed(bodies))

    def work(conn: http.client.HTTPConnection) -> None:
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            conn.request("POST", "/message", body=body)
            response = conn.getresponse()
            response.read()
            with lock:
                statuses[response.status] += 1

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    print(json.dumps({"elapsed": elapsed, "statuses": {str(k): v for k, v in statuses.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
