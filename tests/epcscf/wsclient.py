"""Minimal RFC 6455 WebSocket client for the eP-CSCF protocol cases (Python 3.11 stdlib only).

Meant for tests, so it lets the caller break the protocol on purpose: the opening
handshake takes any header set (Origin, Sec-WebSocket-Protocol or none, extra or omitted
headers) and returns the HTTP status and headers instead of raising; frames can be sent
text or binary, whole or fragmented, masked (default) or not; raw bytes go out as given;
abort() resets the TCP connection (SO_LINGER 0) without a close frame.

Receiving is incremental so one select() loop can drive many connections and UDP peers:
poll() reads what the socket has, answers pings, records pongs and the peer's close frame,
and queues complete messages; recv_message(timeout) is the blocking convenience on top.

    ws = WSClient("127.0.0.1", 8080)
    status, reason, headers = ws.handshake("/", {"Origin": "https://wwsf.home1.net",
                                                 "Sec-WebSocket-Protocol": "sip"})
    ws.send_text("OPTIONS sip:home1.net SIP/2.0\\r\\n...")
    opcode, payload = ws.recv_message(5.0)
    ws.close(1000)
"""
import base64
import hashlib
import os
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

MAX_MESSAGE = 16 * 1024 * 1024  # a test client: refuse anything larger than this
MAX_HEAD = 64 * 1024            # HTTP response head of the handshake


class WSError(Exception):
    """Protocol violation by the server, or use of a connection that is gone."""


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def build_frame(opcode, payload, fin=True, mask=True, rsv=0, mask_key=None):
    """One frame; client frames are masked unless mask=False (a protocol violation)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    head = bytearray([(0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    return bytes(head) + key + _xor(payload, key)


def _xor(data, key):
    if not data:
        return b""
    reps = (len(data) + 3) // 4
    k = int.from_bytes((key * reps)[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ k).to_bytes(len(data), "big")


class WSClient:
    """One client connection. Not thread-safe; meant for one select() loop."""

    def __init__(self, host, port, tls=False, timeout=5.0, server_hostname=None):
        self.host, self.port = host, port
        raw = socket.create_connection((host, port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # self-signed test certificates
            raw = ctx.wrap_socket(raw, server_hostname=server_hostname or host)
        self.sock = raw
        self.tls = tls
        self.buf = bytearray()
        self.messages = []       # complete data messages: (opcode, bytes)
        self.pongs = []          # payloads of pongs received
        self.pings = []          # payloads of pings received (each answered)
        self.close_code = None   # code of the server's close frame (1005 when it had none)
        self.close_reason = b""
        self.closed_by_peer = False  # close frame received
        self.eof = False             # TCP connection ended (FIN or RST)
        self.sent_close = False
        self.upgraded = False
        self._frag_op = None
        self._frag = bytearray()

    # -- opening handshake -------------------------------------------------------------
    def handshake(self, path="/", headers=None, omit=(), timeout=5.0):
        """Sends the upgrade request; returns (status, reason, [(name, value)...]).

        headers: dict or list of (name, value) added to / overriding the defaults (Host,
        Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version); names in omit are
        left out, defaults included. On 101 the Sec-WebSocket-Accept is checked (WSError).
        """
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        default = [("Host", f"{self.host}:{self.port}"), ("Upgrade", "websocket"),
                   ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
                   ("Sec-WebSocket-Version", "13")]
        extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        names = {n.lower() for n, _ in extra}
        skip = {n.lower() for n in omit}
        lines = [f"GET {path} HTTP/1.1"]
        for n, v in default:
            if n.lower() not in names and n.lower() not in skip:
                lines.append(f"{n}: {v}")
        for n, v in extra:
            if n.lower() not in skip:
                lines.append(f"{n}: {v}")
        for n, v in extra:
            if n.lower() == "sec-websocket-key":
                key = v
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason, resp_headers = self._read_http_head(timeout)
        if status == 101:
            got = [v for n, v in resp_headers if n.lower() == "sec-websocket-accept"]
            if got != [accept_value(key)]:
                raise WSError(f"101 with Sec-WebSocket-Accept {got!r}, expected {accept_value(key)!r}")
            self.upgraded = True
        return status, reason, resp_headers

    def _read_http_head(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise WSError("handshake response head too large")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WSError("no handshake response")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except socket.timeout:
                continue
            if not data:
                self.eof = True
                raise WSError("connection closed during the handshake"
                              + (f" after {bytes(self.buf[:80])!r}" if self.buf else ""))
            self.buf += data
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise WSError(f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        # A body after a refusal (e.g. 403 with text) is not part of the WebSocket stream.
        if int(parts[1]) != 101:
            self.buf.clear()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    # -- sending ---------------------------------------------------------------------------
    def send_raw(self, data):
        """Writes bytes as given (no framing)."""
        self.sock.settimeout(5.0)
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.send_raw(build_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    def send_text(self, data):
        self.send_frame(OP_TEXT, data)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_fragmented(self, data, parts, opcode=OP_TEXT, ping_between=False):
        """One message in `parts` frames (first opcode, then continuation frames).

        ping_between interleaves a ping after the first fragment (control frames may be
        injected in the middle of a fragmented message, RFC 6455 5.4).
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        parts = max(1, min(parts, len(data) or 1))
        size = -(-len(data) // parts)
        chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        out = bytearray()
        for i, chunk in enumerate(chunks):
            out += build_frame(opcode if i == 0 else OP_CONT, chunk, fin=i == len(chunks) - 1)
            if ping_between and i == 0 and len(chunks) > 1:
                out += build_frame(OP_PING, b"frag")
        self.send_raw(bytes(out))

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def close(self, code=1000, reason=b""):
        """Sends a close frame (code None: empty payload). The TCP side stays open until
        the server answers; see wait_closed()."""
        payload = b"" if code is None else struct.pack("!H", code) + (
            reason.encode() if isinstance(reason, str) else reason)
        self.send_frame(OP_CLOSE, payload)
        self.sent_close = True

    def abort(self):
        """Resets the TCP connection: SO_LINGER 0 then close gives an RST, no close frame."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._close_socket()

    def shutdown(self):
        """Closes our side of the socket without any WebSocket close frame (FIN)."""
        self._close_socket()

    def _close_socket(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.eof = True

    # -- receiving ---------------------------------------------------------------------------
    def fileno(self):
        return self.sock.fileno() if self.sock is not None else -1

    def poll(self):
        """Reads what is available (call when select() says readable) and processes frames.
        Returns False once the connection has ended."""
        if self.sock is None:
            return False
        while True:
            self.sock.setblocking(False)
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                data = None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                data = b""
            finally:
                if self.sock is not None:
                    self.sock.setblocking(True)
            if data is None:
                break
            if not data:
                self.eof = True
                self._parse()
                self._close_socket()
                return False
            self.buf += data
            if not (self.tls and self.sock.pending()):
                break
        self._parse()
        return True

    def _parse(self):
        while True:
            frame = self._take_frame()
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode == OP_PING:
                self.pings.append(payload)
                if not self.sent_close and self.sock is not None:
                    try:
                        self.send_frame(OP_PONG, payload)
                    except OSError:
                        pass
            elif opcode == OP_PONG:
                self.pongs.append(payload)
            elif opcode == OP_CLOSE:
                self.closed_by_peer = True
                if len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    self.close_reason = payload[2:]
                else:
                    self.close_code = 1005
                if not self.sent_close and self.sock is not None:
                    try:  # echo the close (RFC 6455 5.5.1)
                        self.send_frame(OP_CLOSE, payload[:2])
                    except OSError:
                        pass
                    self.sent_close = True
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise WSError("new data frame inside a fragmented message")
                if fin:
                    self.messages.append((opcode, payload))
                else:
                    self._frag_op, self._frag = opcode, bytearray(payload)
            elif opcode == OP_CONT:
                if self._frag_op is None:
                    raise WSError("continuation frame without a message")
                self._frag += payload
                if len(self._frag) > MAX_MESSAGE:
                    raise WSError("message too large")
                if fin:
                    self.messages.append((self._frag_op, bytes(self._frag)))
                    self._frag_op, self._frag = None, bytearray()
            else:
                raise WSError(f"unknown opcode {opcode:#x}")

    def _take_frame(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin = bool(b[0] & 0x80)
        if b[0] & 0x70:
            raise WSError("RSV bits set by the server without an extension")
        opcode = b[0] & 0x0F
        masked = bool(b[1] & 0x80)
        n = b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            pos = 10
        if n > MAX_MESSAGE:
            raise WSError(f"frame of {n} bytes")
        if masked:  # servers must not mask (RFC 6455 5.1); accept but note it
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        if masked:
            payload = _xor(payload, key)
            self.server_masked = True
        del b[: pos + n]
        if opcode >= 0x8 and (not fin or n > 125):
            raise WSError("bad control frame")
        return fin, opcode, payload

    def recv_message(self, timeout=5.0):
        """Next data message (opcode, bytes), or None if none came within timeout or the
        connection ended first (see closed_by_peer / close_code / eof)."""
        import select
        deadline = time.monotonic() + timeout
        while not self.messages:
            if self.sock is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not (self.tls and self.sock.pending()):
                r, _, _ = select.select([self.sock], [], [], left)
                if not r:
                    return None
            self.poll()
        return self.messages.pop(0)

    def wait_closed(self, timeout=5.0):
        """Waits for the server's close frame or the end of TCP; returns close_code."""
        import select
        deadline = time.monotonic() + timeout
        while self.sock is not None and not self.closed_by_peer:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self.poll()
        return self.close_code
