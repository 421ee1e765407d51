#!/usr/bin/env python3
"""Runs the eP-CSCF protocol cases (tests/epcscf/cases/*.case).

The runner plays the browser WICs (WebSocket connections ws[1], ws[2]... to ws.listen,
wsclient.py) and the IMS core (a scripted SIP/UDP peer "mw" bound to mw.next_hop, and a
second one "ecscf" bound to emergency.ecscf). Each case is a file of steps written from
the requirement catalogue (docs: /work/shared/spec/requirements.md rows EPC-xx, Ex):
what the WIC sends, what must come out on Mw or back on the WebSocket, byte for byte
where it matters. The format is in tests/epcscf/cases/README.md (parser: casefmt.py).
In short:

    row: EPC-06, E1                       header: row(s), purpose, config overrides,
    purpose: bare REGISTER -> 401 Bearer  tokens to mint (claims JSON), options
    config: auth.bearer_every_request = yes
    token alice: {"impi": "alice@home1.net", "impu": ["sip:alice@home1.net"]}
    ws[1]>                                send on WIC connection 1 (lines sent with CRLF,
    REGISTER sip:{{realm}} SIP/2.0        \\xNN escapes, {{placeholders}}), block ends "."
    ...
    .
    ws[1]< SIP/2.0 401                    expect: start-line regex, then +Hdr: re (present,
    +WWW-Authenticate: ^Bearer            matches), -Hdr (absent), =Hdr: exact, *Hdr: N,
    mw- none-for 500                      !Hdr: re (no value matches), ?CAP Hdr: re(group)

Modes:
  run_cases.py --epcscf BIN [CASE...]   start epcscf-ref per case (fresh ports, temp config,
                                        JWKS from mint-token.mjs), check it stays alive,
                                        answers /healthz and stops cleanly
  run_cases.py --ws H:P --mw H:P --core-port N [--ecscf-port N] --keydir DIR [CASE...]
                                        against a running eP-CSCF (cases with config
                                        overrides are skipped)
  run_cases.py --check [CASE...]        parse every case (syntax, regexes, references)
  run_cases.py --selftest               client, peer and runner against Kamailio
                                        (tests/epcscf/selftest-kamailio.cfg)

Output: one line per case, "PASS name", "FAIL name: first mismatch" or "SKIP name: why";
exit status 1 if any case failed.
"""
import argparse
import glob
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import casefmt  # noqa: E402
from casefmt import Env, HttpHead, SipMsg, check_expects, eval_check, parse_case  # noqa: E402
from wsclient import OP_BINARY, OP_TEXT, WSClient, WSError  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
MINT = os.path.join(REPO, "tests", "js", "mint-token.mjs")
CASES_DIR = os.path.join(HERE, "cases")
SELFTEST_DIR = os.path.join(HERE, "selftest")
HOST = "127.0.0.1"
SETTLE_MS = 300        # quiet time at the end of a case before "unexpected message" checks
PROBE_TIMEOUT = 5.0    # the desynchronisation probe must be answered within this

# The configuration every case starts from ("key = value" lines of epcscf-ref); case
# "config:" lines override or add keys. {ws} {mw} {core} {ecscf} {http} {keydir} are
# filled in per case.
BASE_CONFIG = [
    ("workers", "1"),
    ("log.level", "debug"),
    ("ws.listen", "127.0.0.1:{ws}"),
    ("ws.allowed_origins", "https://wwsf.home1.net"),
    ("ws.max_message", "65536"),
    ("mw.listen", "127.0.0.1:{mw}"),
    ("mw.advertise", "127.0.0.1:{mw}"),
    ("mw.next_hop", "127.0.0.1:{core}"),
    ("mw.transaction_timeout", "4000"),
    ("ims.realm", "home1.net"),
    ("ims.visited_network_id", "visited1.net"),
    ("token.issuer", "https://waf.home1.net"),
    ("token.audience", "epcscf.home1.net"),
    ("token.jwks_file", "{keydir}/jwks.json"),
    ("token.authz_server", "https://waf.home1.net/"),
    ("token.scope", "ims"),
    ("auth.bearer_every_request", "yes"),
    ("emergency.ecscf", "127.0.0.1:{ecscf}"),
    ("emergency.numbers", "112, 911"),
    ("emergency.allow_unregistered", "no"),
    ("http.listen", "127.0.0.1:{http}"),
]


KEEP_ON_FAILURE = []  # work dirs of failed cases: the temp root is kept for them


class CaseFailure(Exception):
    pass


def free_port(kinds=("tcp", "udp")):
    """A loopback port that is free for every socket kind given."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kinds[0] == "tcp" else socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        ok = True
        for k in kinds[1:]:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM if k == "tcp" else socket.SOCK_DGRAM)
            try:
                t.bind((HOST, port))
            except OSError:
                ok = False
            t.close()
        s.close()
        if ok:
            return port
    raise RuntimeError("no free port")


# --------------------------------------------------------------------------------------
# Endpoints

SEEN_BY_PORT = {}


class UdpPeer:
    """A scripted SIP/UDP endpoint (the IMS core on Mw, or the E-CSCF)."""

    def __init__(self, name, port, target):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.target = target          # where requests go (the eP-CSCF's Mw address)
        # Raw datagrams already received: retransmissions are dropped, also those of a
        # previous case on the same port (against a running server, ports are reused).
        self.seen = SEEN_BY_PORT.setdefault(self.port, set())
        self.req_src = {}             # Call-ID -> address the last request came from
        self.last_src = None
        self.dups = 0

    def fileno(self):
        return self.sock.fileno()

    def read(self):
        out = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if data.strip(b"\r\n") == b"":
                continue  # keep-alive
            if data in self.seen:
                self.dups += 1
                continue
            self.seen.add(data)
            msg = SipMsg(data)
            msg.src = addr
            self.last_src = addr
            if not msg.is_response and msg.call_id:
                self.req_src[msg.call_id] = addr
            out.append(msg)

    def send(self, data):
        msg = SipMsg(data)
        if msg.is_response:
            dest = self.req_src.get(msg.call_id) or self.last_src or self.target
        else:
            dest = self.target
        self.sock.sendto(data, dest)

    def close(self):
        self.sock.close()


class WsEndpoint:
    def __init__(self, name):
        self.name = name
        self.client = None
        self.handshake = None         # (status or "closed", reason, headers)
        self.closed_by_us = False
        self.close_expected = False
        self.last_ping = b""


def response_to(req, status="200 OK", extra=(), to_tag=None):
    """A minimal response to a request (Via, From, To with tag, Call-ID, CSeq)."""
    lines = [f"SIP/2.0 {status}"]
    for name in ("Via", "From"):
        lines += req.lines_of(name)
    to = req.lines_of("To")
    if to and ";tag=" not in to[0]:
        to[0] += ";tag=" + (to_tag or "auto" + os.urandom(3).hex())
    lines += to + req.lines_of("Call-ID") + req.lines_of("CSeq") + list(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


# --------------------------------------------------------------------------------------
# One case run

class CaseRun:
    """Executes the steps of one case against endpoints already set up."""

    def __init__(self, case, env, ports, targets, verbose=False):
        self.case = case
        self.env = env
        self.ports = ports
        self.targets = targets        # {"ws": (host, port), "mw": (host, port)}
        self.verbose = verbose
        self.timeout = int(case.opts["timeout"]) / 1000.0
        self.strict100 = case.opts["strict-100"] == "yes"
        self.auto_sub = case.opts["core-auto"] == "subscribe-reg"
        self.udp = {}
        self.ws = {}
        self.queue = {}
        self.auto_calls = set()       # Call-IDs of dialogs the auto-responder owns
        self.probe_calls = set()
        for name, port in (("mw", ports["core"]), ("ecscf", ports["ecscf"])):
            self.udp[name] = UdpPeer(name, port, targets["mw"])
            self.queue[name] = []
        for name in case.ws_ids:
            self.ws[name] = WsEndpoint(name)
            self.queue[name] = []

    def log(self, text):
        if self.verbose:
            print(f"    {text}", flush=True)

    def fail(self, step, text):
        raise CaseFailure(f"{step.lineno} ({step.ep or step.kind}): {text}" if step else text)

    # -- I/O pump ----------------------------------------------------------------------------
    def pump(self, seconds):
        """Reads from every endpoint for up to `seconds` (returns early once something was
        queued); answers pings and auto-handled requests on the way."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            socks = [p for p in self.udp.values()] + [w.client for w in self.ws.values()
                                                     if w.client is not None and w.client.sock is not None]
            pending = [c for c in socks if isinstance(c, WSClient) and c.tls and c.sock.pending()]
            left = deadline - time.monotonic()
            if pending:
                ready = pending
            else:
                ready, _, _ = select.select(socks, [], [], max(0.0, left)) if socks else ([], [], [])
                if not socks:
                    time.sleep(max(0.0, left))
            got = False
            for s in ready:
                if isinstance(s, UdpPeer):
                    for msg in s.read():
                        got |= self._dispatch_udp(s, msg)
                else:
                    ep = next(w for w in self.ws.values() if w.client is s)
                    try:
                        s.poll()
                    except WSError as e:
                        raise CaseFailure(f"{ep.name}: WebSocket protocol error from the eP-CSCF: {e}")
                    while s.messages:
                        opcode, payload = s.messages.pop(0)
                        msg = SipMsg(payload)
                        msg.opcode = "binary" if opcode == OP_BINARY else "text"
                        if msg.status == 100 and not self.strict100:
                            continue
                        self.log(f"{ep.name} <- {msg.summary()}")
                        self.queue[ep.name].append(msg)
                        got = True
            if got or time.monotonic() >= deadline:
                return got

    def _dispatch_udp(self, peer, msg):
        if msg.status == 100 and not self.strict100:
            return False
        cid = msg.call_id
        if cid in self.probe_calls:
            if not msg.is_response:
                peer.send(response_to(msg))
            return False
        if peer.name == "mw" and self.auto_sub:
            if cid in self.auto_calls:
                if not msg.is_response:
                    peer.send(response_to(msg))
                self.log(f"{peer.name} <- {msg.summary()} (auto)")
                return False
            if msg.method == "SUBSCRIBE" and (msg.first("event") or "").split(";")[0].strip() == "reg":
                self.auto_calls.add(cid)
                self._answer_reg_subscribe(peer, msg)
                self.log(f"{peer.name} <- {msg.summary()} (auto 200 + NOTIFY)")
                return False
        self.log(f"{peer.name} <- {msg.summary()}")
        self.queue[peer.name].append(msg)
        return True

    def _answer_reg_subscribe(self, peer, sub):
        """What an S-CSCF does with a reg-event SUBSCRIBE (RFC 3680): 200, then a NOTIFY
        with the full registration state."""
        expires = sub.first("expires") or "600000"
        tag = "scscf" + os.urandom(3).hex()
        core = f"{HOST}:{self.ports['core']}"
        resp = response_to(sub, extra=[f"Expires: {expires}", f"Contact: <sip:scscf@{core}>"], to_tag=tag)
        peer.send(resp)
        to_tag = SipMsg(resp).first("to")
        aor = casefmt.uri_of(sub.first("to"))
        state = "terminated" if expires.strip() == "0" else "active"
        body = ('<?xml version="1.0"?>\r\n'
                '<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">\r\n'
                f' <registration aor="{aor}" id="r1" state="{state}">\r\n'
                f'  <contact id="c1" state="{state}" event="registered"><uri>{aor}</uri></contact>\r\n'
                ' </registration>\r\n</reginfo>\r\n')
        target = casefmt.uri_of(sub.first("contact")) or f"sip:{HOST}:{self.ports['mw']}"
        lines = [f"NOTIFY {target} SIP/2.0",
                 f"Via: SIP/2.0/UDP {core};branch=z9hG4bK{os.urandom(6).hex()};rport",
                 "Max-Forwards: 70",
                 f"From: {to_tag}", f"To: {sub.first('from')}", f"Call-ID: {sub.call_id}",
                 "CSeq: 1 NOTIFY", "Event: reg",
                 f"Subscription-State: {state}" + (f";expires={expires}" if state == "active" else ";reason=timeout"),
                 f"Contact: <sip:scscf@{core}>",
                 "Content-Type: application/reginfo+xml",
                 f"Content-Length: {len(body.encode())}", "", body]
        peer.send("\r\n".join(lines).encode())

    # -- steps -------------------------------------------------------------------------------
    def run(self):
        steps = self.case.steps
        k = 0
        while k < len(steps):
            st = steps[k]
            if st.kind == "recv" and st.group is not None:
                group = [st]
                while k + 1 < len(steps) and steps[k + 1].group == st.group:
                    k += 1
                    group.append(steps[k])
                self.expect_unordered(group)
            else:
                self.step(st)
            k += 1
        self.finish()

    def step(self, st):
        env = self.env
        self.log(f"{st.lineno}: {st.kind} {st.ep or ''} {st.arg}")
        if st.kind == "handshake":
            self.do_handshake(st)
        elif st.kind == "status":
            self.do_status(st)
        elif st.kind == "send":
            self.do_send(st)
        elif st.kind == "recv":
            msg = self.next_message(st)
            problem = self.match(st, msg)
            if problem:
                self.fail(st, f"{problem}; got {msg.summary()!r}")
        elif st.kind == "none":
            self.pump_until(float(st.arg) / 1000, [st.ep], st)
        elif st.kind == "quiet":
            self.pump_until(float(st.arg) / 1000, list(self.queue), st)
        elif st.kind == "sleep":
            end = time.monotonic() + float(st.arg) / 1000
            while time.monotonic() < end:
                self.pump(end - time.monotonic())
        elif st.kind == "timeout":
            self.timeout = int(st.arg) / 1000.0
        elif st.kind == "check":
            try:
                problem = eval_check(st.arg, env)
            except KeyError as e:
                problem = str(e)
            if problem:
                self.fail(st, problem)
        else:
            self.do_ws_control(st)

    def ws_client(self, st):
        ep = self.ws[st.ep]
        if ep.client is None or ep.client.sock is None:
            self.fail(st, "connection is not open")
        return ep, ep.client

    def do_handshake(self, st):
        ep = self.ws[st.ep]
        host, port = self.targets["ws"]
        try:
            ep.client = WSClient(host, port, timeout=self.timeout)
        except OSError as e:
            self.fail(st, f"cannot connect to ws.listen {host}:{port}: {e}")
        headers = [("Origin", self.env.value("origin")), ("Sec-WebSocket-Protocol", "sip")]
        omit = []
        for line in st.block:
            line = line.strip()
            if line.startswith("-"):
                omit.append(line[1:])
                continue
            name, _, value = line.partition(":")
            value = self.env.text(value.strip())
            headers = [(n, v) for n, v in headers if n.lower() != name.strip().lower()]
            headers.append((name.strip(), value))
        try:
            ep.handshake = ep.client.handshake(st.arg, headers, omit, timeout=self.timeout)
        except WSError as e:
            ep.handshake = ("closed", str(e), [])
        self.log(f"{st.ep} handshake -> {ep.handshake[0]} {ep.handshake[1]}")

    def do_status(self, st):
        import re
        ep = self.ws[st.ep]
        status, reason, headers = ep.handshake
        if not re.fullmatch(st.arg, str(status)):
            self.fail(st, f"handshake status {status} {reason}, expected /{st.arg}/")
        problem, _ = check_expects(st.expects, HttpHead(status, reason, headers), self.env, st.ep)
        if problem:
            self.fail(st, f"handshake response {status}: {problem}")

    def do_send(self, st):
        raw = "raw" in st.opts
        try:
            data = self.env.message(st.block, st.ep, raw=raw)
        except KeyError as e:
            self.fail(st, f"cannot build the message: {e}")
        if st.ep in self.udp:
            self.log(f"{st.ep} -> {data[:80]!r}")
            self.udp[st.ep].send(data)
            return
        ep, c = self.ws_client(st)
        opcode = OP_BINARY if "binary" in st.opts else OP_TEXT
        frag = next((int(o[5:]) for o in st.opts if o.startswith("frag=")), 1)
        self.log(f"{st.ep} -> {data[:80]!r}")
        try:
            if frag > 1 or "ping-between" in st.opts:
                c.send_fragmented(data, frag, opcode, ping_between="ping-between" in st.opts)
            else:
                c.send_frame(opcode, data)
        except OSError as e:
            self.fail(st, f"send failed: {e}")

    def do_ws_control(self, st):
        ep, c = (self.ws[st.ep], None)
        if st.kind == "expect-close":
            c = ep.client
            ep.close_expected = True
            end = time.monotonic() + self.timeout
            while c is not None and c.sock is not None and not c.closed_by_peer and time.monotonic() < end:
                self.pump(end - time.monotonic())
            if c is None or not (c.closed_by_peer or c.eof):
                self.fail(st, "the eP-CSCF did not close the connection")
            if st.arg and st.arg != "none" and str(c.close_code) != st.arg:
                self.fail(st, f"close code {c.close_code}, expected {st.arg}")
            if st.arg == "none" and c.closed_by_peer:
                self.fail(st, f"close frame {c.close_code}, expected the TCP connection to end without one")
            return
        ep, c = self.ws_client(st)
        try:
            if st.kind == "close":
                c.close(None if st.arg == "none" else int(st.arg or 1000))
                ep.closed_by_us = True
            elif st.kind == "abort":
                c.abort()
                ep.closed_by_us = True
            elif st.kind == "shutdown":
                c.shutdown()
                ep.closed_by_us = True
            elif st.kind == "ping":
                ep.last_ping = self.env.text(st.arg).encode()
                c.ping(ep.last_ping)
            elif st.kind == "pong":
                end = time.monotonic() + self.timeout
                while not c.pongs and time.monotonic() < end:
                    self.pump(end - time.monotonic())
                if not c.pongs:
                    self.fail(st, "no pong")
                got = c.pongs.pop(0)
                if got != ep.last_ping:
                    self.fail(st, f"pong payload {got!r}, expected {ep.last_ping!r}")
            elif st.kind == "send-bytes":
                c.send_raw(casefmt.unescape(self.env.text(st.arg).encode()))
        except OSError as e:
            self.fail(st, f"{st.kind} failed: {e}")

    # -- expectations ------------------------------------------------------------------------
    def next_message(self, st):
        q = self.queue[st.ep]
        end = time.monotonic() + self.timeout
        while not q:
            left = end - time.monotonic()
            if left <= 0:
                ws = self.ws.get(st.ep)
                gone = ""
                if ws and ws.client and (ws.client.closed_by_peer or ws.client.eof):
                    gone = f" (connection closed by the eP-CSCF, code {ws.client.close_code})"
                try:
                    want = self.env.text(st.arg, st.ep)
                except KeyError:
                    want = st.arg
                self.fail(st, f"nothing received within {int(self.timeout * 1000)} ms, "
                              f"expected /{want}/{gone}{self.elsewhere()}")
            self.pump(left)
        return q.pop(0)

    def elsewhere(self):
        """What is waiting on other endpoints (helps to read a timeout)."""
        waiting = [f"{ep}: {q[0].summary()!r}" for ep, q in self.queue.items() if q]
        return f"; meanwhile {', '.join(waiting)}" if waiting else ""

    def match(self, st, msg):
        """None if msg satisfies the step (captures and snapshots are then recorded)."""
        import re
        try:
            start_re = self.env.text(st.arg, st.ep, regex=True)
        except KeyError as e:
            return str(e)
        if not re.match(start_re, msg.start):
            return f"start line does not match /{start_re}/"
        problem, caps = check_expects(st.expects, msg, self.env, st.ep, getattr(msg, "opcode", None))
        if problem:
            return problem
        self.env.caps.update(caps)
        self.env.last[st.ep] = msg
        for name in st.save:
            self.env.snaps[name] = msg
        return None

    def expect_unordered(self, group):
        left_steps = list(group)
        end = time.monotonic() + self.timeout
        while left_steps:
            progressed = False
            for ep in {s.ep for s in left_steps}:
                q = self.queue[ep]
                while q:
                    msg = q[0]
                    cands = [s for s in left_steps if s.ep == ep]
                    if not cands:
                        break
                    for s in cands:
                        if self.match(s, msg) is None:
                            q.pop(0)
                            left_steps.remove(s)
                            progressed = True
                            break
                    else:
                        s = cands[0]
                        self.fail(s, f"{msg.summary()!r} matches no step of the unordered group; "
                                     f"against this one: {self.match(s, msg)}")
            if not left_steps:
                return
            remain = end - time.monotonic()
            if remain <= 0:
                s = left_steps[0]
                self.fail(s, f"nothing received within {int(self.timeout * 1000)} ms, "
                             f"expected /{s.arg}/{self.elsewhere()}")
            if not progressed:
                self.pump(remain)

    def pump_until(self, seconds, eps, st):
        end = time.monotonic() + seconds
        while True:
            for ep in eps:
                if self.queue.get(ep):
                    self.fail(st, f"unexpected message on {ep}: {self.queue[ep][0].summary()!r}")
            left = end - time.monotonic()
            if left <= 0:
                return
            self.pump(left)

    # -- end of case -------------------------------------------------------------------------
    def finish(self):
        end = time.monotonic() + SETTLE_MS / 1000
        while time.monotonic() < end:
            self.pump(end - time.monotonic())
        for ep, q in self.queue.items():
            if q:
                raise CaseFailure(f"end of case: unexpected message on {ep}: {q[0].summary()!r}")
        for name, ep in self.ws.items():
            c = ep.client
            if c is None or not c.upgraded or ep.closed_by_us or ep.close_expected:
                continue
            if c.closed_by_peer or c.eof:
                raise CaseFailure(f"end of case: {name} was closed by the eP-CSCF "
                                  f"(close code {c.close_code}); the flow must survive")
            if self.case.opts["probe"] == "yes":
                self.probe(name, c)

    def probe(self, name, c):
        """Desynchronisation check: a well-formed REGISTER without credentials on the same
        connection must still get a final response (any status)."""
        tag = os.urandom(6).hex()
        cid = f"probe-{tag}@wic.test"
        self.probe_calls.add(cid)
        realm = self.env.value("realm")
        msg = (f"REGISTER sip:{realm} SIP/2.0\r\n"
               f"Via: SIP/2.0/WS probe.invalid;branch=z9hG4bK{tag};rport\r\n"
               "Max-Forwards: 70\r\n"
               f"From: <sip:probe@{realm}>;tag={tag}\r\n"
               f"To: <sip:probe@{realm}>\r\n"
               f"Call-ID: {cid}\r\n"
               "CSeq: 1 REGISTER\r\n"
               "Contact: <sip:probe@probe.invalid;transport=ws>;expires=60\r\n"
               "Content-Length: 0\r\n\r\n")
        try:
            c.send_text(msg)
        except OSError as e:
            raise CaseFailure(f"end of case: probe on {name} could not be sent: {e}")
        end = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < end:
            for m in list(self.queue[name]):
                if m.call_id == cid and m.is_response and m.status and m.status >= 200:
                    self.queue[name].remove(m)
                    return
            self.pump(end - time.monotonic())
        raise CaseFailure(f"end of case: flow desynchronised: the probe REGISTER on {name} got "
                          f"no final response within {int(PROBE_TIMEOUT * 1000)} ms")

    def close(self):
        for ep in self.ws.values():
            if ep.client is not None and ep.client.sock is not None:
                ep.client.shutdown()
        for p in self.udp.values():
            p.close()


# --------------------------------------------------------------------------------------
# Tokens

def mint_tokens(case, keydir, cfg, env):
    """Signs the case's tokens in one node process; returns {name: compact JWS}."""
    if not case.tokens:
        return {}
    names, lines = [], []
    for name, spec in case.tokens.items():
        claims = {"iss": cfg.get("token.issuer"), "aud": cfg.get("token.audience"),
                  "scope": cfg.get("token.scope", "ims"), "client_id": "wwsf-test", "sub": name}
        claims.update(_expand_json(spec["claims"], env))
        line = {"claims": claims, "header": _expand_json(spec["header"], env)}
        if spec["key"] == "other":
            line["key"] = os.path.join(keydir, "other", "key.json")
        names.append(name)
        lines.append(json.dumps(line))
    out = subprocess.run(["node", MINT, "sign-many", keydir, "-"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise CaseFailure(f"mint-token failed: {out.stderr.strip()}")
    tokens = out.stdout.split()
    if len(tokens) != len(names):
        raise CaseFailure("mint-token returned a wrong number of tokens")
    return dict(zip(names, tokens))


def _expand_json(obj, env):
    if isinstance(obj, str):
        return env.text(obj)
    if isinstance(obj, list):
        return [_expand_json(x, env) for x in obj]
    if isinstance(obj, dict):
        return {k: _expand_json(v, env) for k, v in obj.items()}
    return obj


def keygen(keydir):
    for d in (keydir, os.path.join(keydir, "other")):
        subprocess.run(["node", MINT, "keygen", d], check=True, timeout=60)


# --------------------------------------------------------------------------------------
# The eP-CSCF process

class Epcscf:
    def __init__(self, binary, workdir, config_lines, http_port, ws_port):
        self.ws_port = ws_port
        self.workdir = workdir
        self.cfg_path = os.path.join(workdir, "epcscf.conf")
        with open(self.cfg_path, "w") as f:
            f.write("# written by tests/epcscf/run_cases.py\n")
            f.writelines(f"{k} = {v}\n" for k, v in config_lines)
        self.log_path = os.path.join(workdir, "epcscf.log")
        self.log = open(self.log_path, "wb")
        self.http_port = http_port
        self.proc = subprocess.Popen([binary, "-c", self.cfg_path], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def healthz(self):
        try:
            conn = http.client.HTTPConnection(HOST, self.http_port, timeout=2)
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return None

    def wait_ready(self, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise CaseFailure(f"eP-CSCF exited at start with status {self.proc.returncode}: "
                                  f"{self.tail(3)}")
            if self.healthz() == 200 and self.ws_port_open():
                return
            time.sleep(0.05)
        raise CaseFailure(f"eP-CSCF /healthz not 200 within {timeout:.0f} s: {self.tail(3)}")

    def ws_port_open(self):
        """ws.listen accepts TCP connections (the probe connection is closed at once)."""
        try:
            socket.create_connection((HOST, self.ws_port), timeout=1).close()
            return True
        except OSError:
            return False

    def check_alive(self):
        if self.proc.poll() is not None:
            raise CaseFailure(f"eP-CSCF died during the case (status {self.proc.returncode}): {self.tail(3)}")
        status = self.healthz()
        if status != 200:
            raise CaseFailure(f"eP-CSCF /healthz answered {status} after the case")

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s. Returns a problem text or None."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                return "did not stop within 5 s of SIGTERM"
        self.log.close()
        rc = self.proc.returncode
        if rc not in (0, -signal.SIGTERM):
            return f"exit status {rc} after SIGTERM (crash or sanitizer report): {self.tail(3)}"
        return None

    def tail(self, n):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
            return " | ".join(lines[-n:]) or "(empty log)"
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------------------------
# Drivers

def case_files(args_cases, directory):
    if args_cases:
        return args_cases
    return sorted(glob.glob(os.path.join(directory, "*.case")))


def base_config(ports, keydir):
    fill = dict(ports, keydir=keydir)
    return [(k, v.format(**fill)) for k, v in BASE_CONFIG]


def merged_config(base, overrides):
    cfg = list(base)
    for k, v in overrides:
        cfg = [(a, b) for a, b in cfg if a != k]
        cfg.append((k, v))
    return cfg


def run_one(case, binary, keydir, workroot, verbose, external=None):
    """Runs one parsed case. Returns (status, text)."""
    if case.skip:
        return "SKIP", case.skip
    if external is not None and case.config:
        return "SKIP", "needs config overrides (run with --epcscf)"
    workdir = tempfile.mkdtemp(prefix=case.name[:40] + "-", dir=workroot)
    if external is None:
        ports = {"ws": free_port(("tcp",)), "mw": free_port(("udp", "tcp")),
                 "core": free_port(("udp",)), "ecscf": free_port(("udp",)),
                 "http": free_port(("tcp",))}
    else:
        ports = dict(external["ports"])
    cfg_lines = merged_config(base_config(ports, keydir), case.config) if external is None \
        else external["config"]
    cfg = dict(cfg_lines)
    env = Env(ports, cfg, {})
    server = None
    run = None
    problem = None
    targets = {"ws": (HOST, ports["ws"]), "mw": (HOST, ports["mw"])} if external is None \
        else external["targets"]
    try:
        env.tokens = mint_tokens(case, keydir, cfg, env)
        run = CaseRun(case, env, ports, targets, verbose)  # the core peers listen first
        if external is None:
            server = Epcscf(binary, workdir, cfg_lines, ports["http"], ports["ws"])
            server.wait_ready()
        run.run()
        if server is not None:
            server.check_alive()
        elif external.get("alive"):
            external["alive"]()
    except CaseFailure as e:
        problem = str(e)
    except (OSError, WSError) as e:
        problem = f"{type(e).__name__}: {e}"
    finally:
        if run is not None:
            run.close()
        if server is not None:
            if problem and server.proc.poll() is not None and "died during the case" not in problem \
                    and "exited at start" not in problem:
                # The crash is the cause; what the case saw (a lost flow, a timeout) the effect.
                problem = (f"eP-CSCF died during the case (status {server.proc.returncode}): "
                           f"{server.tail(3)}; the case saw: {problem}")
            stop_problem = server.stop()
            if stop_problem and not problem:
                problem = f"eP-CSCF {stop_problem}"
            if problem:
                problem += f" [log: {server.log_path}]"
                KEEP_ON_FAILURE.append(workdir)
    if problem:
        return "FAIL", problem
    shutil.rmtree(workdir, ignore_errors=True)
    return "PASS", ""


def report(case_path, status, text, xfail=None):
    name = os.path.basename(case_path).rsplit(".", 1)[0]
    if xfail is not None:
        if status == "FAIL" and xfail in text:
            status, text = "PASS", f"(failed as expected: {text})"
        elif status == "FAIL":
            text = f"failed, but not with {xfail!r}: {text}"
        elif status == "PASS":
            status, text = "FAIL", f"was expected to fail with {xfail!r}"
    print(f"{status} {name}" + (f": {text}" if text else ""), flush=True)
    return status


def cmd_check(paths):
    bad = 0
    for p in paths:
        try:
            c = parse_case(p)
            print(f"ok   {os.path.basename(p)}  [{', '.join(c.rows)}] {len(c.steps)} steps"
                  + (f" (skip: {c.skip})" if c.skip else ""))
        except (casefmt.CaseError, OSError, UnicodeDecodeError) as e:
            print(f"BAD  {e}")
            bad += 1
    print(f"{len(paths) - bad}/{len(paths)} case files parse")
    return 1 if bad else 0


def run_all(paths, binary, keydir, workroot, verbose, external=None):
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for p in paths:
        try:
            case = parse_case(p)
        except (casefmt.CaseError, OSError) as e:
            counts[report(p, "FAIL", f"case file: {e}")] += 1
            continue
        status, text = run_one(case, binary, keydir, workroot, verbose, external)
        counts[report(p, status, text, case.xfail)] += 1
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if counts["FAIL"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", help="case files (default: all of tests/epcscf/cases)")
    ap.add_argument("--epcscf", metavar="BIN", help="start this epcscf-ref for each case")
    ap.add_argument("--check", action="store_true", help="only parse the case files")
    ap.add_argument("--selftest", action="store_true", help="check client, peer and runner with Kamailio")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every message")
    ext = ap.add_argument_group("against a running eP-CSCF")
    ext.add_argument("--ws", metavar="HOST:PORT")
    ext.add_argument("--mw", metavar="HOST:PORT", help="its Mw address (where the core peer sends)")
    ext.add_argument("--core-port", type=int, help="port the core peer binds (its mw.next_hop)")
    ext.add_argument("--ecscf-port", type=int, default=0, help="port of the E-CSCF peer")
    ext.add_argument("--http-port", type=int, default=0)
    ext.add_argument("--keydir", help="dir of key.json (its token.jwks_file is DIR/jwks.json)")
    ext.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a config value of the running eP-CSCF (placeholders, token claims)")
    args = ap.parse_args()

    if args.check:
        paths = args.cases or sorted(glob.glob(os.path.join(CASES_DIR, "*.case"))
                                     + glob.glob(os.path.join(SELFTEST_DIR, "*.case")))
        return cmd_check(paths)
    if args.selftest:
        import selftest
        return selftest.main(args)

    workroot = tempfile.mkdtemp(prefix="epcscf-cases-")
    try:
        paths = case_files(args.cases, CASES_DIR)
        if args.epcscf:
            if not os.access(args.epcscf, os.X_OK):
                print(f"run_cases: {args.epcscf} is not an executable", file=sys.stderr)
                return 2
            keydir = os.path.join(workroot, "keys")
            keygen(keydir)
            return run_all(paths, os.path.abspath(args.epcscf), keydir, workroot, args.verbose)
        if not (args.ws and args.mw and args.core_port and args.keydir):
            ap.error("give --epcscf BIN, or --ws, --mw, --core-port and --keydir, or --check/--selftest")
        external = external_setup(args)
        return run_all(paths, None, args.keydir, workroot, args.verbose, external)
    finally:
        if args.keep or KEEP_ON_FAILURE:
            print(f"temp dir kept: {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)


def external_setup(args, alive=None):
    def hp(s):
        h, _, p = s.rpartition(":")
        return (h, int(p))
    ports = {"ws": hp(args.ws)[1], "mw": hp(args.mw)[1], "core": args.core_port,
             "ecscf": args.ecscf_port or free_port(("udp",)), "http": args.http_port}
    config = base_config(ports, args.keydir)
    config = merged_config(config, [tuple(x.strip() for x in s.split("=", 1)) for s in args.set])
    return {"ports": ports, "config": config, "targets": {"ws": hp(args.ws), "mw": hp(args.mw)},
            "alive": alive}


if __name__ == "__main__":
    sys.exit(main())
