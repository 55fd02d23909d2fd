"""A loopback TCP proxy that can delay, stall, drop, cut mid-reply and partition.

Put it between a client and a server (``FaultProxy(port_of_server)``, then connect to
``proxy.port``): between apps or relays and Redis, or between senders and the emulator. Each
connection is two pump threads, one per direction. Faults apply to what passes from then on:

- ``delay(seconds, direction="reply")``: hold every chunk that long before passing it on;
- ``stall()``: pass nothing on (connections stay open) until ``heal()``;
- ``partition()``: like ``stall``, and new connections are accepted but never reach the
  server (a black hole, as a network partition looks to both ends);
- ``drop()``: reset every open connection now (new ones work);
- ``cut_next_reply()``: pass half of the next reply chunk on, then reset that connection;
- ``heal()``: end every fault.

The pumps wait on a condition, never poll. Nothing here decides a test's outcome: the proxy
only shapes what the real client and server see.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

__all__ = ["FaultProxy"]

REPLY = "reply"
REQUEST = "request"


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._delays: dict[str, float] = {REPLY: 0.0, REQUEST: 0.0}
        self._stalled = False
        self._partitioned = False
        self._cut = 0
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        #: Counters for the test's own report.
        self.connections = 0
        self.cuts = 0
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")
        self._thread.start()

    # -- faults --------------------------------------------------------------------------------

    def delay(self, seconds: float, direction: str = REPLY) -> None:
        with self._cond:
            self._delays[direction] = seconds
            self._cond.notify_all()

    def stall(self) -> None:
        with self._cond:
            self._stalled = True
            self._cond.notify_all()

    def partition(self) -> None:
        with self._cond:
            self._stalled = True
            self._partitioned = True
            self._cond.notify_all()

    def drop(self) -> None:
        with self._cond:
            conns, self._conns = self._conns, []
        for pair in conns:
            for s in pair:
                _reset(s)

    def cut_next_reply(self, n: int = 1) -> None:
        with self._cond:
            self._cut += n

    def heal(self) -> None:
        with self._cond:
            self._delays = {REPLY: 0.0, REQUEST: 0.0}
            self._stalled = self._partitioned = False
            self._cut = 0
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                if self._closed:
                    _reset(client)
                    return
                self.connections += 1
                black_hole = self._partitioned
            if black_hole:
                # Accepted, never answered: the client's own timeout must notice.
                threading.Thread(target=self._hole, args=(client,), daemon=True).start()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._cond:
                self._conns.append((client, server))
            for src, dst, direction in ((client, server, REQUEST), (server, client, REPLY)):
                threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True).start()

    def _hole(self, client: socket.socket) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._partitioned or self._closed)
        _reset(client)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                arrived = time.monotonic()
                with self._cond:
                    # Stalled: hold everything until healed.
                    self._cond.wait_for(lambda: not self._stalled or self._closed)
                    delay = self._delays[direction]
                    if delay > 0:
                        # Hold this chunk until its time has come, or the fault ends.
                        self._cond.wait_for(
                            lambda: (
                                self._delays[direction] == 0
                                or self._closed
                                or time.monotonic() >= arrived + delay
                            ),
                            timeout=max(0.0, arrived + delay - time.monotonic()),
                        )
                    cut = direction == REPLY and self._cut > 0
                    if cut:
                        self._cut -= 1
                        self.cuts += 1
                if cut:
                    dst.sendall(data[: max(1, len(data) // 2)])
                    _reset(dst)
                    _reset(src)
                    return
                dst.sendall(data)
        except OSError:
            _reset(dst)
            _reset(src)


def _reset(s: socket.socket) -> None:
    """Close with RST, as a crashed peer or a broken network path does."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
