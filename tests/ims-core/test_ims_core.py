#!/usr/bin/env python3
"""Checks tests/ims-core/kamailio.cfg, the IMS core stand-in, over real SIP/UDP.

usage: test_ims_core.py PORT   (Kamailio listening on 127.0.0.1:PORT)

Registration by Trusted Node Authentication only (auth-done with the IMPI of the IMPU),
Service-Route and P-Associated-URI in the 200, Bearer credentials refused, and requests
to registered users routed along their Path; unregistered users get 404.
"""
import random
import re
import socket
import sys

CORE = ("127.0.0.1", int(sys.argv[1]))
REALM = "home1.net"


class Peer:
    """One UDP SIP endpoint on loopback."""

    def __init__(self):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(5)
        self.port = self.s.getsockname()[1]

    def send(self, text):
        self.s.sendto(text.replace("\n", "\r\n").encode(), CORE)

    def recv(self):
        data, _ = self.s.recvfrom(65535)
        msg = data.decode()
        head = msg.split("\r\n\r\n", 1)[0].split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        return head[0], headers, msg

    def response(self):
        """The next final response (1xx skipped)."""
        while True:
            start, headers, msg = self.recv()
            if not start.startswith("SIP/2.0 1"):
                return start, headers, msg


def branch():
    return "z9hG4bK" + "%x" % random.getrandbits(64)


def register(ua, user, authorization=None, path=None, expires=600):
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{ua.port};branch={branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag={random.getrandbits(32)}",
        f"To: <sip:{user}@{REALM}>",
        f"Call-ID: reg-{random.getrandbits(64)}",
        "CSeq: 1 REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{ua.port}>;expires={expires}",
        "Supported: path",
    ]
    if path:
        lines.append(f"Path: <sip:term@127.0.0.1:{path};lr>")
    if authorization:
        lines.append(f"Authorization: {authorization}")
    ua.send("\n".join(lines) + "\nContent-Length: 0\n\n")
    return ua.response()


def tna(impi):
    return (f'Digest username="{impi}", realm="{REALM}", nonce="", uri="sip:{REALM}", '
            'response="", integrity-protected="auth-done"')


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


alice, bob, edge = Peer(), Peer(), Peer()  # edge: the eP-CSCF's Mw side (the Path)

# Only Trusted Node Authentication with the right IMPI registers.
start, _, _ = register(alice, "alice")
check(start.startswith("SIP/2.0 403"), f"no credentials: {start}")
start, _, _ = register(alice, "alice", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig")
check(start.startswith("SIP/2.0 403"), f"Bearer on Mw: {start}")
start, _, _ = register(alice, "alice", tna("bob@home1.net"))
check(start.startswith("SIP/2.0 403"), f"another IMPI: {start}")
start, _, _ = register(alice, "alice", tna("alice@home1.net").replace("auth-done", "yes"))
check(start.startswith("SIP/2.0 403"), f"integrity-protected=yes: {start}")

start, h, _ = register(alice, "alice", tna("alice@home1.net"), path=edge.port)
check(start.startswith("SIP/2.0 200"), f"TNA REGISTER: {start}")
check(any(re.match(r"<sip:orig@127\.0\.0\.1:\d+;lr>", v) for v in h.get("service-route", [])),
      f"Service-Route: {h.get('service-route')}")
check(h.get("p-associated-uri") == ["<sip:alice@home1.net>"], f"P-Associated-URI: {h.get('p-associated-uri')}")
check(any(f":{alice.port}" in v for v in h.get("contact", [])), f"Contact: {h.get('contact')}")
service_route = h["service-route"][0]
start, _, _ = register(bob, "bob", tna("bob@home1.net"), path=edge.port)
check(start.startswith("SIP/2.0 200"), f"bob: {start}")

# bob calls alice: the INVITE reaches alice's Path (the edge), addressed to her contact.
call_id = f"call-{random.getrandbits(64)}"
bob.send("\n".join([
    f"INVITE sip:alice@{REALM} SIP/2.0",
    f"Via: SIP/2.0/UDP 127.0.0.1:{bob.port};branch={branch()};rport",
    "Max-Forwards: 70",
    f"Route: {service_route}",
    f"From: <sip:bob@{REALM}>;tag=b1",
    f"To: <sip:alice@{REALM}>",
    f"Call-ID: {call_id}",
    "CSeq: 1 INVITE",
    f"Contact: <sip:bob@127.0.0.1:{bob.port}>",
    "Content-Length: 0", "", ""]))
start, h, msg = edge.recv()
while start.startswith("SIP/2.0"):
    start, h, msg = edge.recv()
check(start == f"INVITE sip:alice@127.0.0.1:{alice.port} SIP/2.0", f"INVITE at the edge: {start}")
check(any("term@127.0.0.1" in v for v in h.get("route", [])), f"Route of the Path: {h.get('route')}")
check("record-route" in h, "the core records its route")
# The edge answers 486 along the Vias; bob gets it.
vias = [v for line in msg.split("\r\n") if line.lower().startswith("via:") for v in [line]]
edge.send("\n".join(["SIP/2.0 486 Busy Here", *[v for v in vias],
                     f"From: <sip:bob@{REALM}>;tag=b1", f"To: <sip:alice@{REALM}>;tag=a1",
                     f"Call-ID: {call_id}", "CSeq: 1 INVITE", "Content-Length: 0", "", ""]))
start, _, _ = bob.response()
check(start.startswith("SIP/2.0 486"), f"486 back to bob: {start}")

# Nobody registered as carol.
bob.send("\n".join([
    f"MESSAGE sip:carol@{REALM} SIP/2.0",
    f"Via: SIP/2.0/UDP 127.0.0.1:{bob.port};branch={branch()};rport",
    "Max-Forwards: 70", f"From: <sip:bob@{REALM}>;tag=b2", f"To: <sip:carol@{REALM}>",
    f"Call-ID: msg-{random.getrandbits(64)}", "CSeq: 1 MESSAGE", "Content-Length: 0", "", ""]))
start, _, _ = bob.response()
check(start.startswith("SIP/2.0 404"), f"unregistered target: {start}")

# Deregistration (Expires 0) with TNA.
start, _, _ = register(alice, "alice", tna("alice@home1.net"), path=edge.port, expires=0)
check(start.startswith("SIP/2.0 200"), f"deregister: {start}")
print("ims-core: TNA registration, Service-Route, Path routing, 403/404 cases: ok")
