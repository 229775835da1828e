"""A crawler: 2 worker processes x 32 coroutines each fetch 200 pages from a web server.

The server is started by this script itself (a slow one: 50 ms a page), so the example
needs no network. Run it with ``python examples/crawler.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from fanmap import parallel

PAGES = 200


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve one request: ``GET /page/17`` gets a small HTML page, 50 ms later."""
    request = await reader.readuntil(b"\r\n\r\n")
    path = request.split()[1].decode()
    await asyncio.sleep(0.05)
    body = f"<html><title>{path}</title><p>{'x' * 100}</p></html>".encode()
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


def start_server() -> int:
    """Run the server in a thread of this script; return its port."""
    ready: list[int] = []
    started = threading.Event()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        ready.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    started.wait()
    return ready[0]


@parallel(workers=2, concurrency=32, timeout=10, retries=2)
async def fetch(url: str) -> tuple[str, int]:
    """Fetch a page; return its title and size."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    body = response.partition(b"\r\n\r\n")[2]
    title = body.split(b"<title>")[1].split(b"</title>")[0].decode()
    return title, len(body)


async def main(urls: list[str]) -> None:
    # From async code: await the map, or stream it; the event loop is never blocked.
    pages = await fetch.amap(urls[:50])
    print("amap:", len(pages), "pages, the first", pages[0][0])

    async def url_stream() -> AsyncIterator[str]:  # an async iterable works as input
        for url in urls[:10]:
            yield url

    titles = [title async for title, _ in fetch.aimap(url_stream())]
    print("aimap:", titles[:3])


if __name__ == "__main__":
    port = start_server()
    urls = [f"http://127.0.0.1:{port}/page/{i}" for i in range(PAGES)]

    began = time.perf_counter()
    pages = fetch.map(urls)  # from plain code: a list, in order
    seconds = time.perf_counter() - began
    print("map:", len(pages), "pages,", sum(size for _, size in pages), "bytes; the first:", pages[:2])
    print(f"took {seconds:.2f}s; one page at a time would take {PAGES * 0.05:.0f}s")

    asyncio.run(main(urls))
