"""api/sse.py: the event framing, and noticing a client that hung up, whatever its socket's descriptor number.

The feed once ended live streams the moment they opened in a long test session: ``select()`` refuses
descriptors above 1024, and the ValueError it raised read as "the client is gone"."""

from __future__ import annotations

import fcntl
import resource
import socket
from collections.abc import Iterator

import pytest

from api.sse import client_gone, frame

HIGH_FD = 1100  # above select()'s FD_SETSIZE (1024)


def _pair(high: bool) -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    if not high:
        return ours, peer
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH_FD + 10:
        ours.close()
        peer.close()
        pytest.skip(f"the open-files limit ({soft}) does not allow a descriptor above {HIGH_FD}")
    moved = fcntl.fcntl(ours.fileno(), fcntl.F_DUPFD, HIGH_FD)  # the lowest free descriptor >= HIGH_FD
    ours.close()
    return socket.socket(fileno=moved), peer


@pytest.fixture(params=[False, True], ids=["low-fd", "high-fd"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = _pair(request.param)
    assert (ours.fileno() >= HIGH_FD) is request.param
    yield ours, peer
    ours.close()
    peer.close()


def test_a_connected_client_is_not_gone(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    assert client_gone({"werkzeug.socket": ours}) is False


def test_a_client_that_sent_more_bytes_is_still_there(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(b"GET / HTTP/1.1\r\n")
    assert client_gone({"gunicorn.socket": ours}) is False
    assert ours.recv(64) == b"GET / HTTP/1.1\r\n"  # only peeked: the bytes are still there for the server


def test_a_client_that_hung_up_is_gone(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    peer.close()
    assert client_gone({"werkzeug.socket": ours}) is True


def test_a_socket_closed_on_our_side_is_gone() -> None:
    ours, peer = socket.socketpair()
    ours.close()
    assert client_gone({"werkzeug.socket": ours}) is True
    peer.close()


def test_without_a_socket_in_the_environ_nobody_is_gone() -> None:
    assert client_gone({}) is False
    assert client_gone({"werkzeug.socket": "not a socket"}) is False


def test_frames_put_retry_event_and_id_before_one_data_line_per_line() -> None:
    text = frame("a\nb", event="x\ny", id="1:\0z", retry_ms=5000)
    assert text == "retry: 5000\nevent: x y\nid: 1:z\ndata: a\ndata: b\n\n"
    assert frame({"k": "é"}) == 'data: {"k":"é"}\n\n'


class _NothingToRead(socket.socket):
    """A socket whose peek finds nothing after poll said readable (EAGAIN, or a timeout on a timed socket)."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        raise BlockingIOError(11, "Resource temporarily unavailable")


def test_a_peek_that_finds_nothing_to_read_is_not_a_hang_up() -> None:
    ours, peer = socket.socketpair()
    quiet = _NothingToRead(ours.family, ours.type, fileno=ours.detach())
    try:
        peer.sendall(b"x")  # readable, so client_gone peeks
        assert not client_gone({"werkzeug.socket": quiet})
    finally:
        quiet.close()
        peer.close()
