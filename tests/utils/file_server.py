"""A real HTTP server for a directory of files (sources, photos) on 127.0.0.1, for a test module."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Quiet(SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve_directory(root: Path, handler: type[SimpleHTTPRequestHandler] = Quiet) -> Iterator[str]:
    """The base URL of ``root`` served over HTTP until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
