"""Mw over TCP (mw.transport = tcp): a second epcscf-ref, started by test-epcscf-e2e.sh
with E2E_WS_PORT/E2E_HTTP pointing at it, registers two WICs and carries an INVITE from one
to the other; the Kamailio stand-in's log shows the REGISTERs arrived over TCP and the INVITE
went back along a Path with transport=tcp. The same instance pings every 2 s: a WIC that
stops answering is dropped and deregistered."""
import os
import re
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_epcscf_e2e_lib as e2e  # noqa: E402

a, b = e2e.token(), e2e.token()
ca, _, _ = e2e.connect(tls=False)
cb, _, _ = e2e.connect(tls=False)
ra = e2e.register(ca, a["impu"], a["access_token"])
rb = e2e.register(cb, b["impu"], b["access_token"])
e2e.check(e2e.status_of(ra) == 200 and e2e.status_of(rb) == 200, "Mw TCP: both REGISTERs -> 200")
lines = e2e.klog_lines(re.escape(f"REGISTER {a['impu']} ") + r".* proto: tcp .*auth-done")
e2e.check(bool(lines) and "transport=tcp" in lines[-1],
          "Mw TCP: the TNA REGISTER reached the core over TCP with a transport=tcp Path")
user_b = b["impu"].split(":", 1)[1]
inv = (f"INVITE {b['impu']} SIP/2.0\r\nVia: SIP/2.0/WSS a.invalid;branch=z9hG4bK{secrets.token_hex(6)}\r\n"
       f"Max-Forwards: 70\r\nFrom: <{a['impu']}>;tag=t1\r\nTo: <{b['impu']}>\r\n"
       f"Call-ID: {secrets.token_hex(8)}@a.invalid\r\nCSeq: 1 INVITE\r\n"
       f"Contact: <sip:a@a.invalid;transport=ws>\r\nAuthorization: Bearer {a['access_token']}\r\n"
       f"Content-Length: 0\r\n\r\n")
ca.send_text(inv.encode())
got = None
for _ in range(3):
    m = cb.recv_message(timeout=8)
    if m is None:
        break
    if m[1].startswith(b"INVITE "):
        got = m[1].decode(errors="replace")
        break
e2e.check(got is not None and f"<{b['impu']}>" in got,
          f"Mw TCP: the INVITE for {user_b} came back from the core to its WebSocket flow")
e2e.check(bool(e2e.klog_lines(r"INVITE to .* via .*transport=tcp")),
          "Mw TCP: the core routed it along the TCP Path")
ca.close()
cb.close()

# EPC-51 (ping timeout): a registered WIC that stops answering pings is dropped after
# ws.ping_interval + ws.ping_timeout (2 + 2 s here) and deregistered on Mw.
d = e2e.token()
cd, _, _ = e2e.connect(tls=False)
rd = e2e.register(cd, d["impu"], d["access_token"])
e2e.check(e2e.status_of(rd) == 200, "ping timeout: REGISTER -> 200")
pattern = re.escape(f"REGISTER {d['impu']} ") + r".*expires: 0 "
# The client now reads nothing, so it answers no ping.
gone = e2e.wait_for(lambda: e2e.klog_lines(pattern), 12)
e2e.check(bool(gone), "ping timeout: the silent WebSocket was dropped and its binding "
          "deregistered with REGISTER Expires 0")
cd.abort()
if e2e.failures:
    sys.exit(1)
print("Mw TCP checks passed")
