#!/usr/bin/env python3
"""A stand-in for `epcscf-ref -c FILE` so `run_cases.py --epcscf` can be checked before the
real server exists: reads the same config keys (ws.listen, mw.listen, mw.next_hop,
http.listen), runs Kamailio with tests/epcscf/selftest-kamailio.cfg on those ports, serves
GET /healthz, and exits 0 on SIGTERM. It is not an eP-CSCF: the protocol cases mostly
fail against it; the selftest uses it for the process handling only.
"""
import http.server
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = os.path.join(os.path.dirname(HERE), "selftest-kamailio.cfg")


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "-c":
        print("usage: fake-epcscf.py -c FILE", file=sys.stderr)
        return 2
    conf = {}
    with open(sys.argv[2]) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "=" in line:
                k, v = line.split("=", 1)
                conf[k.strip()] = v.strip()
    work = os.path.join(os.path.dirname(os.path.abspath(sys.argv[2])), "kamailio")
    os.makedirs(work, exist_ok=True)
    core_port = conf["mw.next_hop"].rsplit(":", 1)[1]
    kam = subprocess.Popen(["kamailio", "-DD", "-E", "-f", CFG, "-A", f"CORE_PORT={core_port}",
                            "-l", f"tcp:{conf['ws.listen']}", "-l", f"udp:{conf['mw.listen']}",
                            "-Y", work, "-P", os.path.join(work, "k.pid"), "-m", "32", "-M", "8"],
                           stdin=subprocess.DEVNULL)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            ok = self.path == "/healthz" and kam.poll() is None
            self.send_response(200 if ok else 503 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    host, port = conf["http.listen"].rsplit(":", 1)
    srv = http.server.ThreadingHTTPServer((host, int(port)), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # FAKE_EPCSCF_CRASH_MS: die like an abort() that long after start (selftest of the
    # runner's crash detection).
    crash_at = time.monotonic() + int(os.environ.get("FAKE_EPCSCF_CRASH_MS", "0")) / 1000
    while not stop.wait(0.05):
        if kam.poll() is not None:
            return 1
        if "FAKE_EPCSCF_CRASH_MS" in os.environ and time.monotonic() > crash_at:
            kam.terminate()
            kam.wait(10)
            return 134
    kam.terminate()
    kam.wait(10)
    srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
