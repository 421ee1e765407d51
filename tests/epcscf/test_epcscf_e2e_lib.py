"""Helpers of the epcscf-ref end-to-end and fault tests (test_epcscf_e2e.py,
test_epcscf_faults.py): tokens from the real waf-server, SIP over WS/WSS with wsclient.py,
the Kamailio stand-in's log, the eP-CSCF's /metrics. Configured by the E2E_* variables of
test-epcscf-e2e.sh."""
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsclient import WSClient  # noqa: E402

WAF = os.environ["E2E_WAF"]
PORTAL_SECRET = os.environ["E2E_PORTAL_SECRET"]
WS_PORT = int(os.environ["E2E_WS_PORT"])
WSS_PORT = int(os.environ["E2E_WSS_PORT"])
HTTP = os.environ["E2E_HTTP"]
ORIGIN = os.environ["E2E_ORIGIN"]
KLOG = os.environ["E2E_KAMAILIO_LOG"]
EPLOG = os.environ["E2E_EPCSCF_LOG"]
DB = os.environ["DATABASE_URL"]

failures = []
# The portal's client credentials, form-encoded inside Basic (RFC 6749 2.3.1).
PORTAL_AUTH = "Basic " + base64.b64encode(
    f"portal:{urllib.parse.quote(PORTAL_SECRET, safe='')}".encode()).decode()


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def token():
    """A pooled identity for a fresh anonymous web session (token exchange at the WAF)."""
    body = urllib.parse.urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:webrtc-ims:params:oauth:token-type:anonymous-session",
        "subject_token": "session-" + secrets.token_hex(12),
    }).encode()
    req = urllib.request.Request(WAF + "/token", data=body)
    req.add_header("Authorization", PORTAL_AUTH)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def revoke(tok):
    body = urllib.parse.urlencode({"token": tok}).encode()
    req = urllib.request.Request(WAF + "/revoke", data=body)
    req.add_header("Authorization", PORTAL_AUTH)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def metrics():
    with urllib.request.urlopen(HTTP + "/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def connect(tls=False, origin=ORIGIN, proto="sip"):
    c = WSClient("127.0.0.1", WSS_PORT if tls else WS_PORT, tls=tls)
    hdrs = {"Origin": origin}
    if proto:
        hdrs["Sec-WebSocket-Protocol"] = proto
    status, _, headers = c.handshake(headers=hdrs)
    return c, status, dict((k.lower(), v) for k, v in headers)


def send_register(c, impu, tok, cseq=1, expires=3600, call_id=None, contact=None):
    user = impu.split(":", 1)[1].split("@")[0]
    call_id = call_id or f"reg-{user}@wic.invalid"
    contact = contact or f"<sip:{user}@{user}.invalid;transport=ws>"
    auth = f"Authorization: Bearer {tok}\r\n" if tok else ""
    msg = (f"REGISTER sip:home1.net SIP/2.0\r\n"
           f"Via: SIP/2.0/WSS {user}.invalid;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
           f"Max-Forwards: 70\r\nFrom: <{impu}>;tag={secrets.token_hex(4)}\r\nTo: <{impu}>\r\n"
           f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
           f"Contact: {contact};expires={expires}\r\n{auth}Content-Length: 0\r\n\r\n")
    c.send_text(msg.encode())


def read_final(c, timeout=12):
    """The next final response on c (provisional ones skipped)."""
    while True:
        m = c.recv_message(timeout=timeout)
        if m is None:
            return "SIP/2.0 000 (no answer: the connection closed or nothing came in time)"
        kind, data = m
        text = data.decode(errors="replace")
        if not text.startswith("SIP/2.0 1"):
            return text


def register(c, impu, tok, **kw):
    send_register(c, impu, tok, **kw)
    return read_final(c)


def healthz():
    try:
        with urllib.request.urlopen(HTTP + "/healthz", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def status_of(resp):
    return int(resp.split(" ", 2)[1])


def header(resp, name):
    for line in resp.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def klog_lines(pattern):
    with open(KLOG, errors="replace") as f:
        return [l for l in f if re.search(pattern, l)]


def wait_for(fn, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


def lease_released(lease):
    out = subprocess.run(["psql", DB, "-Atqc",
                          f"SELECT released_at IS NOT NULL FROM leases WHERE id = '{lease}'"],
                         capture_output=True, text=True).stdout.strip()
    return out == "t"


