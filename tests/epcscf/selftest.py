"""`run_cases.py --selftest`: checks the case machinery without the eP-CSCF.

1. Offline: the RFC 6455 handshake value and framing, escapes and placeholders, the
   expectation checks, and that every case file parses.
2. mint-token.mjs: keygen, sign-many (relative times, null claims, alg none, other key),
   and the tokens verify with jose against the JWKS (all but the two that must not).
3. Kamailio (tests/epcscf/selftest-kamailio.cfg) as a stand-in server on loopback: the
   cases in tests/epcscf/selftest/ run through the same runner as the real ones (WS client,
   scripted UDP core peer, captures, unordered groups, probes), including cases that must
   fail with a given mismatch (xfail) so the runner is shown to catch errors; plus one
   WSS (TLS) exchange with a self-signed certificate.
"""
import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import casefmt
import run_cases
from casefmt import Env, Expect, SipMsg, check_expects, split_list, unescape
from wsclient import OP_PING, OP_TEXT, WSClient, accept_value, build_frame

HERE = os.path.dirname(os.path.abspath(__file__))
KAMAILIO_CFG = os.path.join(HERE, "selftest-kamailio.cfg")


class Checks:
    def __init__(self):
        self.failed = 0

    def ok(self, cond, what):
        print(f"{'PASS' if cond else 'FAIL'} selftest: {what}", flush=True)
        if not cond:
            self.failed += 1


def offline(t):
    # RFC 6455 1.3 example.
    t.ok(accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
         "Sec-WebSocket-Accept of the RFC 6455 example")
    # Frames: masked client frame, and server frames parsed back (lengths 7/126/127 forms).
    f = build_frame(OP_TEXT, b"Hello", mask_key=b"\x37\xfa\x21\x3d")
    t.ok(f == bytes.fromhex("818537fa213d7f9f4d5158"), "masked text frame of RFC 6455 5.7")
    c = WSClient.__new__(WSClient)
    c.buf, c.messages, c.pongs, c.pings = bytearray(), [], [], []
    c._frag_op, c._frag, c.sent_close, c.sock, c.closed_by_peer = None, bytearray(), True, None, False
    for n in (5, 300, 70000):
        c.buf += build_frame(OP_TEXT, b"a" * n, mask=False)
    c.buf += build_frame(OP_TEXT, b"fir", fin=False, mask=False) + build_frame(OP_PING, b"p", mask=False)
    c.buf += build_frame(0, b"st", mask=False)
    c._parse()
    t.ok([len(m[1]) for m in c.messages] == [5, 300, 70000, 5] and c.messages[-1][1] == b"first"
         and c.pings == [b"p"], "frame parsing: 7-bit, 16-bit, 64-bit lengths, fragments, ping inside")
    # Escapes and message building.
    t.ok(unescape(rb"a\x00b\r\n\\") == b"a\x00b\r\n\\", "escapes \\xNN \\r \\n \\\\")
    env = Env({"ws": 1, "mw": 2, "core": 3, "ecscf": 4, "http": 5},
              {"ims.realm": "home1.net", "ws.allowed_origins": "https://wwsf.home1.net"}, {})
    env.last["mw"] = SipMsg(b"INVITE sip:a SIP/2.0\r\nv: SIP/2.0/UDP x;branch=z9hG4bK1, SIP/2.0/WS y\r\n"
                            b"Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n\r\n")
    data = env.message(["SIP/2.0 200 OK", "{{copy:Via}}", "{{copy:Route}}", "{{routes-rev}}",
                        "To: <sip:{{realm}}>;tag={{tag:t}}", "X: {{tag:t}}\\x01",
                        "Content-Length: {{clen}}", "", "abc"], "mw")
    want_tag = env.memo[("tag", "t")]
    t.ok(data == ("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK1, SIP/2.0/WS y\r\n"
                  "Route: <sip:p2;lr>\r\nRoute: <sip:p1;lr>\r\n"
                  f"To: <sip:home1.net>;tag={want_tag}\r\nX: {want_tag}\x01\r\n"
                  "Content-Length: 5\r\n\r\nabc\r\n").encode(),
         "message block: CRLF, copy, absent header line dropped, reversed routes, memo tag, clen")
    t.ok(split_list('<sip:a,b>;x="1,2", sip:c') == ['<sip:a,b>;x="1,2"', "sip:c"], "list splitting")
    msg = SipMsg(b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/WS a;branch=z9hG4bKx\r\n"
                 b"WWW-Authenticate: Bearer realm=\"home1.net\"\r\ni: abc\r\n\r\n")
    ok, _ = check_expects([Expect("+", "WWW-Authenticate", None, r'^Bearer realm="{{realm}}"$', None, "t"),
                           Expect("=", "Call-ID", None, "abc", None, "t"),
                           Expect("-", "Proxy-Authenticate", None, None, None, "t"),
                           Expect("*", "Via", None, "1", None, "t")], msg, env, "ws1")
    bad, _ = check_expects([Expect("-", "Via", None, None, None, "t")], msg, env, "ws1")
    got, caps = check_expects([Expect("?", "Via", 1, r"branch=(\w+)", "B", "t")], msg, env, "ws1")
    t.ok(ok is None and bad and got is None and caps == {"B": "z9hG4bKx"},
         "expectations + - = * ? (compact form i: = Call-ID)")
    paths = sorted(glob.glob(os.path.join(run_cases.CASES_DIR, "*.case"))
                   + glob.glob(os.path.join(run_cases.SELFTEST_DIR, "*.case")))
    bad = []
    for p in paths:
        try:
            casefmt.parse_case(p)
        except casefmt.CaseError as e:
            bad.append(str(e))
    t.ok(not bad and len(paths) > 0, f"all {len(paths)} case files parse" + (f": {bad[0]}" if bad else ""))


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def tokens(t, keydir):
    run_cases.keygen(keydir)
    jwks = json.load(open(os.path.join(keydir, "jwks.json")))
    kid = jwks["keys"][0]["kid"]
    lines = [{"iss": "i", "impu": ["sip:a@h"]},
             {"claims": {"exp": "-60", "jti": None}, "header": {"typ": "JWT"}},
             {"claims": {}, "header": {"alg": "none"}},
             {"claims": {}, "key": os.path.join(keydir, "other", "key.json")}]
    out = subprocess.run(["node", run_cases.MINT, "sign-many", keydir, "-"],
                         input="".join(json.dumps(x) + "\n" for x in lines),
                         capture_output=True, text=True, timeout=60)
    toks = out.stdout.split()
    t.ok(out.returncode == 0 and len(toks) == 4, "mint-token sign-many: one token per line")
    if len(toks) != 4:
        return
    h0, c0 = b64json(toks[0].split(".")[0]), b64json(toks[0].split(".")[1])
    now = time.time()
    t.ok(h0 == {"typ": "at+jwt", "alg": "ES256", "kid": kid} and c0["iss"] == "i"
         and abs(c0["exp"] - c0["iat"] - 300) < 2 and abs(c0["iat"] - now) < 30 and c0["jti"],
         "default header and claims (typ at+jwt, ES256, kid, iat, exp = iat + 300, jti)")
    c1 = b64json(toks[1].split(".")[1])
    t.ok(c1["exp"] < now and "jti" not in c1 and b64json(toks[1].split(".")[0])["typ"] == "JWT",
         "relative exp, null claim left out, header override")
    t.ok(toks[2].endswith(".") and b64json(toks[2].split(".")[0])["alg"] == "none", "alg none: unsecured JWT")
    # Verify with jose: tokens 0 and 1 (signature; exp not checked) good, 3 must fail.
    js = ("import {compactVerify, createLocalJWKSet} from 'jose'; import {readFileSync} from 'node:fs';"
          "const set = createLocalJWKSet(JSON.parse(readFileSync(process.argv[1], 'utf8')));"
          "const out = [];"
          "for (const t of process.argv.slice(2)) { try { await compactVerify(t, set); out.push('ok'); }"
          " catch (e) { out.push('bad'); } }"
          "console.log(out.join(' '));")
    res = subprocess.run(["node", "--input-type=module", "-e", js, os.path.join(keydir, "jwks.json"),
                          toks[0], toks[1], toks[3]], capture_output=True, text=True,
                         cwd=os.path.dirname(run_cases.MINT), timeout=60)
    t.ok(res.stdout.split() == ["ok", "ok", "bad"], f"jose verifies against jwks.json; other key fails ({res.stdout.strip()}{res.stderr.strip()[:200]})")


class Kamailio:
    def __init__(self, workdir):
        self.workdir = workdir
        self.ws = run_cases.free_port(("tcp",))
        self.wss = run_cases.free_port(("tcp",))
        self.mw = run_cases.free_port(("udp", "tcp"))
        self.core = run_cases.free_port(("udp",))
        cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        tls_cfg = os.path.join(workdir, "tls.cfg")
        with open(tls_cfg, "w") as f:
            f.write(f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
                    f"require_certificate = no\nprivate_key = {key}\ncertificate = {cert}\n")
        self.log_path = os.path.join(workdir, "kamailio.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["kamailio", "-DD", "-E", "-f", KAMAILIO_CFG, "-A", f"CORE_PORT={self.core}",
             "-A", "WITH_TLS", "-A", f'TLS_CFG="{tls_cfg}"',
             "-l", f"tcp:127.0.0.1:{self.ws}", "-l", f"tls:127.0.0.1:{self.wss}",
             "-l", f"udp:127.0.0.1:{self.mw}", "-Y", workdir, "-P", os.path.join(workdir, "k.pid"),
             "-m", "32", "-M", "8"], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited: {open(self.log_path).read()[-800:]}")
            try:
                c = WSClient("127.0.0.1", self.ws, timeout=1)
                c.shutdown()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("kamailio did not listen")

    def alive(self):
        if self.proc.poll() is not None:
            raise run_cases.CaseFailure(f"kamailio died (status {self.proc.returncode})")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def tls_check(t, k):
    try:
        c = WSClient("127.0.0.1", k.wss, tls=True)
        status, _, headers = c.handshake("/", {"Origin": "https://wwsf.home1.net",
                                               "Sec-WebSocket-Protocol": "sip"})
        c.send_text("OPTIONS sip:home1.net SIP/2.0\r\nVia: SIP/2.0/WSS t.invalid;branch=z9hG4bKtls\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:t@home1.net>;tag=1\r\nTo: <sip:home1.net>\r\n"
                    "Call-ID: tls-check\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        got = c.recv_message(5)
        c.close(1000)
        code = c.wait_closed(5)
        t.ok(status == 101 and got is not None and got[1].startswith(b"SIP/2.0 200") and code == 1000,
             f"WSS (TLS, self-signed): 101, OPTIONS 200, close 1000 (got {status}, {got and got[1][:20]}, {code})")
    except Exception as e:  # noqa: BLE001 - report whatever broke
        t.ok(False, f"WSS (TLS): {type(e).__name__}: {e}")


def supervisor(t, keydir, work):
    """--epcscf mode with selftest/fake-epcscf.py (Kamailio behind the epcscf-ref command
    line): per-case config and ports, readiness, liveness, clean stop, crash detection."""
    fake = os.path.join(run_cases.SELFTEST_DIR, "fake-epcscf.py")
    for name in ("st-handshake-ok.case", "st-register-via-core.case"):
        case = casefmt.parse_case(os.path.join(run_cases.SELFTEST_DIR, name))
        status, text = run_cases.run_one(case, fake, keydir, work, False)
        t.ok(status == "PASS", f"--epcscf mode (fake-epcscf.py): {name}: {status} {text}")
    path = os.path.join(work, "crash.case")
    with open(path, "w") as f:
        f.write("row: selftest\npurpose: the server dies during the case\n"
                "ws[1] ping x\nws[1] pong\nsleep 1500\n")
    os.environ["FAKE_EPCSCF_CRASH_MS"] = "800"
    try:
        status, text = run_cases.run_one(casefmt.parse_case(path), fake, keydir, work, False)
    finally:
        del os.environ["FAKE_EPCSCF_CRASH_MS"]
    t.ok(status == "FAIL" and "died during the case (status 134)" in text,
         f"--epcscf mode: a server dying mid-case is reported ({status} {text[:160]})")


def main(args):
    t = Checks()
    offline(t)
    work = tempfile.mkdtemp(prefix="epcscf-selftest-")
    k = None
    try:
        keydir = os.path.join(work, "keys")
        tokens(t, keydir)
        if shutil.which("kamailio") is None:
            t.ok(False, "kamailio is not installed (apt-get install kamailio kamailio-websocket-modules)")
            return 1
        k = Kamailio(work)
        tls_check(t, k)
        ns = type("A", (), {})()
        ns.ws, ns.mw, ns.core_port = f"127.0.0.1:{k.ws}", f"127.0.0.1:{k.mw}", k.core
        ns.ecscf_port, ns.http_port, ns.keydir, ns.set = 0, 0, keydir, []
        external = run_cases.external_setup(ns, alive=k.alive)
        paths = args.cases or sorted(glob.glob(os.path.join(run_cases.SELFTEST_DIR, "*.case")))
        rc = run_cases.run_all(paths, None, keydir, work, args.verbose, external)
        t.failed += rc
        supervisor(t, keydir, work)
    finally:
        if k is not None:
            k.stop()
        if t.failed or args.keep:
            print(f"selftest: work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"selftest: {'FAILED' if t.failed else 'ok'}")
    return 1 if t.failed else 0
