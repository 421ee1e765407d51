"""Fault tests of epcscf-ref, run by test-epcscf-e2e.sh after the end-to-end checks (same
servers, E2E_* variables): 1,000 registered WebSocket connections reset at once (every
binding deregistered on Mw, connections, descriptors and memory back to where they were),
the WAF down (cached keys keep verifying), Redis down (a token whose revocation state is
unknown is refused with 503, E6), revocations flowing again once both are back (the feed
reconnected), and the IMS core down (503 to the WIC within the
transaction timeout, nothing stuck afterwards)."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_epcscf_e2e_lib as e2e  # noqa: E402

check, failures = e2e.check, e2e.failures
EP_PID = int(os.environ["E2E_EPCSCF_PID"])
N = int(os.environ.get("E2E_FAULT_CONNS", "1000"))


def fds():
    return len(os.listdir(f"/proc/{EP_PID}/fd"))


def heap_kib():
    """Live heap of the eP-CSCF (its /metrics: the sanitizer's count in this build)."""
    return e2e.metric(e2e.metrics(), "epcscf_heap_in_use_bytes") // 1024


def dereg_count(impus):
    pat = "|".join(re.escape(i) for i in impus)
    return len(e2e.klog_lines(r"REGISTER (" + pat + r") .*expires: 0 "))


def register_many(tokens, n, label):
    """n connections, each registering one of the tokens with its own contact; pipelined so
    a thousand take seconds, not minutes."""
    conns = []
    ok, other = 0, {}
    # Connections and REGISTERs go in waves of 100 so the single Kamailio stand-in keeps up
    # on a loaded 2-core machine; the resets below come all at once.
    for w in range(0, n, 100):
        wave = []
        for i in range(w, min(n, w + 100)):
            c, st, _ = e2e.connect(tls=False)
            if st != 101:
                raise RuntimeError(f"handshake {i}: {st}")
            conns.append(c)
            wave.append((i, c))
        for i, c in wave:
            t = tokens[i % len(tokens)]
            e2e.send_register(c, t["impu"], t["access_token"], cseq=1, expires=600,
                              call_id=f"fault-{label}-{i}@wic.invalid",
                              contact=f"<sip:c{i}@fault{i}.invalid;transport=ws>")
        for i, c in wave:
            r = e2e.read_final(c, timeout=15)
            if e2e.status_of(r) == 200:
                ok += 1
            else:
                line = r.split("\r\n", 1)[0]
                other[line] = other.get(line, 0) + 1
    if other:
        print(f"  answers other than 200: {other}", flush=True)
    return conns, ok


def round_of_resets(tokens, label):
    before_d = dereg_count({t["impu"] for t in tokens})
    conns, ok = register_many(tokens, N, label.replace(' ', ''))
    check(ok == N, f"{label}: {N} WebSocket connections registered ({ok} got 200)")
    regs = e2e.metric(e2e.metrics(), "epcscf_registrations")
    check(regs == N, f"{label}: /metrics shows {regs} registrations")
    t0 = time.monotonic()
    for c in conns:
        c.abort()
    done = e2e.wait_for(lambda: dereg_count({t["impu"] for t in tokens}) - before_d >= N, 30)
    got = dereg_count({t["impu"] for t in tokens}) - before_d
    check(done, f"{label}: all {N} reset connections deregistered on Mw ({got} REGISTER "
          f"Expires 0 in {time.monotonic() - t0:.1f} s)")
    e2e.wait_for(lambda: e2e.metric(e2e.metrics(), "epcscf_ws_connections") == 0, 10)
    m = e2e.metrics()
    check(e2e.metric(m, "epcscf_ws_connections") == 0 and
          e2e.metric(m, "epcscf_registrations") == 0,
          f"{label}: no connection or registration left")


# ---- 1,000 connections reset at once, twice: the second round must not grow anything -----
tokens = [e2e.token() for _ in range(20)]
base_fds = fds()
round_of_resets(tokens, "round 1")
time.sleep(6)  # completed transactions linger 5 s to absorb retransmissions
fds1, heap1 = fds(), heap_kib()
check(fds1 == base_fds, f"round 1: descriptors back to {base_fds} (now {fds1})")
round_of_resets(tokens, "round 2")
time.sleep(6)  # completed transactions linger 5 s to absorb retransmissions
fds2, heap2 = fds(), heap_kib()
check(fds2 == base_fds, f"round 2: descriptors back to {base_fds} (now {fds2})")
# A leak of even 1 KiB per connection would show as 1 MiB; caches (token cache, JWKS)
# are warm after round 1.
check(heap2 <= heap1 + 1024,
      f"heap after round 2 ({heap2} KiB) within 1 MiB of round 1 ({heap1} KiB)")

# ---- the WAF down: cached keys keep working --------------------------------------------
spare, unseen = e2e.token(), e2e.token()
os.kill(int(os.environ["E2E_WAF_PID"]), 15)
time.sleep(0.5)
c, _, _ = e2e.connect(tls=False)
r = e2e.register(c, spare["impu"], spare["access_token"])
check(e2e.status_of(r) == 200, "WAF down: a fresh token still verifies with the cached keys")
c.close()

# ---- E6: revocation state unknown (Redis down) -> fail closed with 503 + Retry-After ----
with open(os.environ["E2E_REDIS_PIDFILE"]) as fh:
    os.kill(int(fh.read().strip()), 15)
time.sleep(1)
c, _, _ = e2e.connect(tls=False)
r = e2e.register(c, unseen["impu"], unseen["access_token"])
check(e2e.status_of(r) == 503 and e2e.header(r, "Retry-After") is not None,
      f"E6: Redis down, a token never seen -> 503 with Retry-After (got {r.split(chr(13))[0]})")
c.close()

# ---- Redis back under the revocation feed, WAF back: revocations flow again -----------
subprocess.run(os.environ["E2E_REDIS_RESTART"], shell=True, check=True)
subprocess.run(os.environ["E2E_WAF_START"], shell=True, check=True)
e2e.wait_for(lambda: 'revocation_feed":"up' in e2e.healthz(), 10)
m = e2e.metrics()
check((e2e.metric(m, "epcscf_revocation_feed_reconnects_total") or 0) >= 1
      and e2e.metric(m, "epcscf_revocation_feed_up") == 1,
      "revocation feed reconnected after the Redis restart")
# libimsauth's revocation check waits a second after a failed connection attempt (the E6
# check above made one) before it tries Redis again.
time.sleep(1.2)
t = e2e.token()
c, _, _ = e2e.connect(tls=True)
r = e2e.register(c, t["impu"], t["access_token"])
check(e2e.status_of(r) == 200, f"registered with a token of the restarted WAF ({r.split(chr(13))[0]})")
before = dereg_count([t["impu"]])
t0 = time.monotonic()
e2e.revoke(t["access_token"])
ok = e2e.wait_for(lambda: dereg_count([t["impu"]]) > before, 2)
check(ok and c.wait_closed(timeout=2),
      f"revocation after the reconnect deregistered in {time.monotonic() - t0:.2f} s")

# ---- the IMS core down: 503 to the WIC, nothing stuck ------------------------------------
t = e2e.token()
os.kill(int(os.environ["E2E_KAMAILIO_PID"]), 15)
time.sleep(0.5)
c, _, _ = e2e.connect(tls=False)
t0 = time.monotonic()
r = e2e.register(c, t["impu"], t["access_token"])
took = time.monotonic() - t0
check(e2e.status_of(r) == 503 and took < 12,
      f"IMS core down: 503 to the WIC after {took:.1f} s (transaction timeout 8 s)")
c.close()
time.sleep(0.5)
m = e2e.metrics()
check(e2e.metric(m, "epcscf_ws_connections") == 0 and e2e.metric(m, "epcscf_registrations") == 0,
      "IMS core down: nothing left behind")
check("ok" in e2e.healthz(), "epcscf-ref still healthy")

if failures:
    print(f"{len(failures)} fault check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all fault checks passed")
