"""End-to-end checks of epcscf-ref with tokens from a real waf-server and a real IMS core
stand-in (Kamailio), driven over WS and WSS by the stdlib client in wsclient.py. Started by
test-epcscf-e2e.sh, which exports the E2E_* variables. Each check names its spec row."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_epcscf_e2e_lib import (check, connect, failures, header, klog_lines,  # noqa: E402
                                 lease_released, metric, metrics, register, revoke, status_of,
                                 token, wait_for, WAF)

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
check(bool(wait_for(lambda: klog_lines(re.escape(f"SUBSCRIBE reg for {a['impu']} ")), 3)),
      "EPC-12: the eP-CSCF subscribed to the reg event of the registered IMPU")
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
