"""A TCP proxy the tests run in front of a server of theirs, to misbehave on purpose.

Modes: ``forward``; ``bytewise`` (the server's answer reaches the client one byte per write,
so every multi-byte character is split across the client's reads); ``refuse`` (open
connections are reset, new ones refused); ``blackhole`` (connections stay open and nothing
passes: a connection that met the black hole stays silent for good, as after a network
partition, while new ones work again once the mode is back to ``forward``).
"""
from __future__ import annotations

import socket
import threading
import time


class TcpProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target_port>, in one of the modes above."""

    def __init__(self, target_port: int, mode: str = "forward"):
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.mode = mode
        self.delay = 0.0   # seconds each read waits before it is passed on (a slow network)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                client.close()
                continue
            with self._lock:
                self._sockets.append(client)
            if self.mode == "blackhole":
                continue   # held open, never answered
            server = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets.append(server)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.mode == "bytewise"),
                             daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, bytewise: bool) -> None:
        sink.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := source.recv(65536):
                if self.mode == "blackhole":
                    break   # this connection never carries a byte again
                if self.mode == "refuse":
                    _reset(source, sink)
                    return
                if self.delay:
                    time.sleep(self.delay)
                if not bytewise:
                    sink.sendall(data)
                    continue
                for index in range(len(data)):
                    sink.sendall(data[index:index + 1])
                    time.sleep(0.0002)
            else:
                _reset(source, sink)   # the sender closed: pass it on
                return
        except OSError:
            _reset(source, sink)
            return
        while True:   # silent, not closed: the peer waits until it gives up by itself
            try:
                if not source.recv(65536):
                    return
            except OSError:
                return

    def set(self, mode: str) -> None:
        """Switch mode; ``refuse`` also resets every open connection."""
        self.mode = mode
        if mode == "refuse":
            with self._lock:
                sockets, self._sockets = self._sockets, []
            _reset(*sockets)

    def close(self) -> None:
        """Stop listening and reset what is open."""
        self._listener.close()
        self.set("refuse")


def _reset(*sockets: socket.socket) -> None:
    for end in sockets:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
