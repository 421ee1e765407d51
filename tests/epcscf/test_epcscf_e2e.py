"""End-to-end checks of epcscf-ref with tokens from a real waf-server and a real IMS core
stand-in (Kamailio), driven over WS and WSS by the stdlib client in wsclient.py. Started by
test-epcscf-e2e.sh, which exports the E2E_* variables. Each check names its spec row."""
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
    import base64
    req.add_header("Authorization", "Basic " + base64.b64encode(
        f"portal:{urllib.parse.quote(PORTAL_SECRET, safe='')}".encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def revoke(tok):
    body = urllib.parse.urlencode({"token": tok}).encode()
    req = urllib.request.Request(WAF + "/revoke", data=body)
    import base64
    req.add_header("Authorization", "Basic " + base64.b64encode(
        f"portal:{urllib.parse.quote(PORTAL_SECRET, safe='')}".encode()).decode())
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


def register(c, impu, tok, cseq=1, expires=3600, call_id=None, contact=None):
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
    while True:
        kind, data = c.recv_message(timeout=8)
        text = data.decode(errors="replace")
        if not text.startswith("SIP/2.0 1"):
            return text


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


# ---- W2 handshake (EPC-02, EPC-16) ----------------------------------------------------------
for tls in (False, True):
    t = "WSS" if tls else "WS"
    c, st, h = connect(tls)
    check(st == 101 and h.get("sec-websocket-protocol") == "sip",
          f"EPC-02 {t}: allowed Origin + sip -> 101 with Sec-WebSocket-Protocol: sip")
    c.shutdown()
    c, st, _ = connect(tls, origin="https://evil.example")
    check(st == 403, f"EPC-16 {t}: foreign Origin -> 403 (got {st})")
    c, st, _ = connect(tls, proto=None)
    check(st != 101, f"EPC-02 {t}: no sip subprotocol -> no 101 (got {st})")

# ---- registration (EPC-06, EPC-10, EPC-11, EPC-13, EPC-14) ----------------------------------
a = token()
b = token()
c, st, _ = connect(tls=True)
r = register(c, a["impu"], None)
wa = header(r, "WWW-Authenticate") or ""
check(status_of(r) == 401 and wa.startswith("Bearer ") and f'authz_server="{WAF}"' in wa
      and 'realm="home1.net"' in wa, "EPC-06: REGISTER without credentials -> 401 Bearer challenge")
r = register(c, a["impu"], a["access_token"], cseq=2, expires=3600)
check(status_of(r) == 200, f"EPC-10: REGISTER with the WAF's token over WSS -> 200 ({r[:40]!r})")
exp_claim = a["expires_in"]
m = re.search(r"expires=(\d+)", header(r, "Contact") or "")
check(m is not None and int(m.group(1)) <= exp_claim,
      f"EPC-13: expiry granted to the WIC ({m and m.group(1)}) <= token life ({exp_claim})")
check(header(r, "P-Charging-Vector") is None, "EPC-21: no P-Charging-Vector towards the WIC")
impi = a["impi"]
lines = wait_for(lambda: klog_lines(re.escape(f"REGISTER {a['impu']} ") + ".*auth-done"), 2)
check(bool(lines) and f'username="{impi}"' in lines[-1] and "Bearer" not in lines[-1]
      and a["access_token"][:20] not in "".join(klog_lines(".")),
      "EPC-10/11: Mw REGISTER carries the TNA header with the token's IMPI and no token")
check(bool(lines) and "path: <sip:" in lines[-1] and ";ob>" in lines[-1],
      "EPC-11: Mw REGISTER carries our Path with a flow token")
r = register(c, a["impu"], b["access_token"], cseq=3)
check(status_of(r) == 403, f"EPC-14/E11: re-REGISTER with another identity's token -> 403 (got {status_of(r)})")
r = register(c, a["impu"], a["access_token"], cseq=4, expires=600)
check(status_of(r) == 200, "EPC-14: re-REGISTER with the same identity -> 200")

# ---- revocation reaches the live registration within 2 s ------------------------------------
before = len(klog_lines(re.escape(f"REGISTER {a['impu']} ") + r".*expires: 0 "))
t0 = time.monotonic()
check(revoke(a["access_token"]) == 200, "WAF revokes the token (RFC 7009)")
closed = c.wait_closed(timeout=3)
dereg = wait_for(lambda: len(klog_lines(re.escape(f"REGISTER {a['impu']} ") + r".*expires: 0 "))
                 > before, 3)
elapsed = time.monotonic() - t0
check(bool(closed) and dereg and elapsed <= 2.0,
      f"revocation: flow closed and REGISTER Expires 0 on Mw within 2 s (took {elapsed:.2f} s)")
check(metric(metrics(), 'epcscf_deregistrations_total{cause="revoked"}') == 1,
      "revocation counted in /metrics")

# ---- flow loss deregisters (EPC-51) and releases the pooled identity -------------------------
c2, _, _ = connect(tls=False)
r = register(c2, b["impu"], b["access_token"], cseq=1)
check(status_of(r) == 200, "REGISTER over WS -> 200")
before = len(klog_lines(re.escape(f"REGISTER {b['impu']} ") + r".*expires: 0 "))
c2.abort()
dereg = wait_for(lambda: len(klog_lines(re.escape(f"REGISTER {b['impu']} ") + r".*expires: 0 "))
                 > before, 2)
check(dereg, "EPC-51: WebSocket reset -> REGISTER Expires 0 with TNA on Mw")
check(wait_for(lambda: lease_released(b["pool_lease"]), 5),
      "the pooled identity's lease is released through the WAF's lease API")

# ---- a malformed message gets 400 and the flow stays usable ----------------------------------
c3, _, _ = connect(tls=False)
c3.send_text(b"REGISTER sip:home1.net SIP/2.0\r\nVia: SIP/2.0/WSS x.invalid;branch=z9hG4bK1\r\n"
             b"From: <sip:a@home1.net>;tag=1\r\nTo: <sip:a@home1.net>\r\nCall-ID: 1\r\n"
             b"CSeq: 1 REGISTER\r\nContent-Length: 5\r\n\r\n")
kind, data = c3.recv_message(timeout=3)
check(data.startswith(b"SIP/2.0 400 "), "malformed REGISTER (bad Content-Length) -> 400")
d = token()
r = register(c3, d["impu"], d["access_token"])
check(status_of(r) == 200, "the same flow registers afterwards")
c3.close()

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all e2e checks passed")
