"""Protocol-case files for the eP-CSCF: parser, placeholders, expectations, SIP reader.

The format is described in tests/epcscf/cases/README.md; this module is its one
implementation. It does no I/O besides reading case and include files, so run_cases.py
--check can validate every case without a server.
"""
import json
import os
import re
import secrets

# --------------------------------------------------------------------------------------
# SIP messages as the tests read them (lenient: the point is to report, not to refuse)

COMPACT = {"i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
           "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
           "v": "via", "o": "event", "r": "refer-to", "b": "referred-by", "x": "session-expires",
           "u": "allow-events", "a": "accept-contact", "j": "reject-contact",
           "d": "request-disposition", "y": "identity", "n": "identity-info"}

# Headers whose comma-separated values count as separate instances (RFC 3261 7.3.1 lists).
LIST_HEADERS = {"via", "route", "record-route", "path", "service-route", "contact", "supported",
                "require", "proxy-require", "allow", "p-associated-uri", "p-asserted-identity",
                "security-client", "security-server", "security-verify", "allow-events", "unsupported"}


def split_list(value):
    """Splits a header value at commas outside quotes and <...>."""
    out, cur, quote, angle, esc = [], [], False, False, False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if quote and ch == "\\":
            esc = True
        elif ch == '"':
            quote = not quote
        elif not quote and ch == "<":
            angle = True
        elif not quote and ch == ">":
            angle = False
        elif ch == "," and not quote and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [v for v in out if v]


class SipMsg:
    """A received message: start line, headers in order, body. Names are kept as sent
    (self.headers) and looked up case-insensitively with compact forms expanded."""

    def __init__(self, raw):
        self.raw = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        text = self.raw.decode("utf-8", errors="replace")
        sep = text.find("\r\n\r\n")
        if sep < 0:
            head, self.body = text, ""
        else:
            head, self.body = text[:sep], text[sep + 4:]
        lines = head.split("\r\n")
        self.start = lines[0]
        self.headers = []  # (lowercase long name, value)
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:  # folded continuation
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            n = name.strip().lower()
            self.headers.append((COMPACT.get(n, n), value.strip()))
        self.text = text

    def values(self, name):
        """Instances of a header: one per line, split at commas for list headers."""
        n = name.lower()
        n = COMPACT.get(n, n)
        out = []
        for hn, v in self.headers:
            if hn == n:
                out.extend(split_list(v) if n in LIST_HEADERS else [v])
        return out

    def lines_of(self, name):
        """Header lines "Name: value" as they would be copied into another message."""
        n = name.lower()
        n = COMPACT.get(n, n)
        return [f"{name}: {v}" for hn, v in self.headers if hn == n]

    def first(self, name):
        v = self.values(name)
        return v[0] if v else None

    @property
    def is_response(self):
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self):
        if not self.is_response:
            return None
        parts = self.start.split(" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def method(self):
        return None if self.is_response else self.start.split(" ", 1)[0]

    @property
    def call_id(self):
        return self.first("call-id")

    def summary(self):
        return self.start[:120]


def uri_of(value):
    """The URI of a name-addr or addr-spec header value."""
    if value is None:
        return ""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1)
    return value.split(";", 1)[0].strip()


# --------------------------------------------------------------------------------------
# Case files

STEP_RE = re.compile(
    r"^(?:(?P<ws>ws\[(?P<n>\d+)\])|(?P<udp>mw|ecscf))(?P<rest>[<>\-]?.*)$")
OTHER_STEP_RE = re.compile(r"^(sleep|quiet|timeout|check|unordered|end|include)\b(.*)$")
EXPECT_RE = re.compile(
    r"^(?P<op>[+\-=!*]|\?(?P<cap>[A-Za-z_][\w-]*)\s+)(?P<name>@?[A-Za-z][\w.-]*)"
    r"(?:\[(?P<idx>-?\d+)\])?(?::\s?(?P<val>.*))?$")
PLACEHOLDER_RE = re.compile(r"\{\{([^{}]+)\}\}")
HEADER_KEYS = {"row", "purpose", "config", "core-auto", "probe", "skip", "xfail", "timeout",
               "strict-100"}
TOKEN_RE = re.compile(r"^token\s+(?P<name>[\w-]+)(?:\s+(?P<kind>header|key))?\s*:\s*(?P<val>.*)$")
PSEUDO = {"@start", "@body", "@msg", "@opcode"}


class CaseError(Exception):
    def __init__(self, path, lineno, msg):
        super().__init__(f"{path}:{lineno}: {msg}" if lineno else f"{path}: {msg}")


class Expect:
    """One expectation line of an expectation step."""

    def __init__(self, op, name, idx, val, cap, lineno):
        self.op, self.name, self.idx, self.val, self.cap, self.lineno = op, name, idx, val, cap, lineno

    def __repr__(self):
        return f"Expect({self.op}{self.name}[{self.idx}]: {self.val})"


class Step:
    def __init__(self, kind, ep, lineno, arg="", block=None, opts=(), expects=None):
        self.kind = kind        # handshake status send recv none close expect-close abort ...
        self.ep = ep            # "ws1", "mw", "ecscf" or None
        self.lineno = lineno
        self.arg = arg          # start-line regex, status regex, ms, ...
        self.block = block      # list of lines (send, handshake)
        self.opts = set(opts)
        self.expects = expects or []
        self.save = []          # snapshot names
        self.group = None       # unordered group id

    def __repr__(self):
        return f"Step({self.kind} {self.ep} {self.arg!r} @{self.lineno})"


class Case:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path).rsplit(".", 1)[0]
        self.rows = []
        self.purpose = ""
        self.config = []           # (key, value)
        self.tokens = {}           # name -> {"claims":..., "header":..., "key":...}
        self.opts = {"core-auto": "subscribe-reg", "probe": "yes", "timeout": "5000",
                     "strict-100": "no"}
        self.skip = None
        self.xfail = None
        self.steps = []
        self.ws_ids = []


def _unescape_arg_includes(text, args):
    def sub(m):
        key = m.group(1)
        if key not in args:
            raise KeyError(key)
        return args[key]
    return re.sub(r"\{\{arg:([\w-]+)\}\}", sub, text)


def _read_lines(path, args, seen, origin):
    """Lines of a case or include file with includes expanded: [(text, where)]."""
    if path in seen:
        raise CaseError(origin, 0, f"include loop through {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        text = _unescape_arg_includes(text, args)
    except KeyError as e:
        raise CaseError(path, 0, f"include argument {e} not given")
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        where = f"{os.path.basename(path)}:{i}"
        s = line.strip()
        if s.startswith("include ") or s == "include":
            parts = s.split()[1:]
            if not parts:
                raise CaseError(path, i, "include needs a file")
            inc = os.path.join(os.path.dirname(path), parts[0])
            if not os.path.isfile(inc):
                raise CaseError(path, i, f"include file {parts[0]} not found")
            iargs = {}
            for p in parts[1:]:
                k, sep, v = p.partition("=")
                if not sep:
                    raise CaseError(path, i, f"include argument {p!r} is not k=v")
                iargs[k] = v
            out.extend(_read_lines(inc, iargs, seen | {path}, where))
        else:
            out.append((line, where))
    return out


def parse_case(path):
    """Parses one case file into a Case (raises CaseError with file:line)."""
    case = Case(path)
    lines = _read_lines(path, {}, frozenset(), path)
    i = 0
    in_header = True
    group = None
    ngroup = 0

    def err(where, msg):
        raise CaseError(path, 0, f"{where}: {msg}")

    def take_block(start):
        j = start
        block = []
        while j < len(lines):
            if lines[j][0] == ".":
                return block, j + 1
            block.append(lines[j][0])
            j += 1
        err(lines[start - 1][1], "block not ended by a line '.'")

    def take_expects(start, step):
        j = start
        while j < len(lines):
            raw, where = lines[j]
            s = raw.strip()
            if s.startswith("#"):
                j += 1
                continue
            if s.startswith("save "):
                step.save.append(s[5:].strip())
                j += 1
                continue
            m = EXPECT_RE.match(s)
            if not s or not m or s[0] not in "+-=!*?":
                break
            op = m.group("op")[0]
            name = m.group("name")
            if name.startswith("@") and name not in PSEUDO:
                err(where, f"unknown pseudo header {name}")
            val = m.group("val")
            if op in "+=!?*" and val is None and op != "+":
                err(where, f"'{op}{name}' needs ': value'")
            if op == "*" and not re.fullmatch(r"\d+", val.strip()):
                err(where, "'*Name: N' needs a number")
            idx = int(m.group("idx")) if m.group("idx") else None
            e = Expect(op, name, idx, val, m.group("cap"), where)
            if op in "+!?" and val is not None:
                _check_regex(val, where, err)
            step.expects.append(e)
            j += 1
        return j

    while i < len(lines):
        raw, where = lines[i]
        s = raw.strip()
        i += 1
        if not s or s.startswith("#"):
            continue
        m = STEP_RE.match(s)
        o = OTHER_STEP_RE.match(s)
        t = TOKEN_RE.match(s)
        hk = re.match(r"([\w-]+)\s*:", s)
        if in_header and hk and hk.group(1) in HEADER_KEYS:
            m = o = None  # "timeout: 5000" is the header key, "timeout 5000" the step
        if in_header and not m and not o:
            if t:
                tok = case.tokens.setdefault(t.group("name"), {"claims": {}, "header": {}, "key": None})
                kind, val = t.group("kind"), t.group("val").strip()
                if kind == "key":
                    if val != "other":
                        err(where, "token key must be 'other'")
                    tok["key"] = val
                else:
                    try:
                        obj = json.loads(val)
                    except json.JSONDecodeError as e:
                        err(where, f"token JSON: {e}")
                    if not isinstance(obj, dict):
                        err(where, "token JSON must be an object")
                    tok["header" if kind == "header" else "claims"] = obj
                continue
            key, sep, val = s.partition(":")
            key = key.strip()
            if not sep or key not in HEADER_KEYS:
                err(where, f"unknown header line {s!r} (keys: {', '.join(sorted(HEADER_KEYS))}, token NAME)")
            val = val.strip()
            if key == "row":
                case.rows = [r.strip() for r in val.split(",") if r.strip()]
            elif key == "purpose":
                case.purpose = val
            elif key == "config":
                k, sep2, v = val.partition("=")
                if not sep2 or not k.strip():
                    err(where, "config needs 'key = value'")
                case.config.append((k.strip(), v.strip()))
            elif key == "skip":
                case.skip = val
            elif key == "xfail":
                case.xfail = val
            else:
                case.opts[key] = val
            continue
        in_header = False
        if o:
            kw, arg = o.group(1), o.group(2).strip()
            if kw in ("sleep", "quiet", "timeout"):
                if not re.fullmatch(r"\d+", arg):
                    err(where, f"{kw} needs milliseconds")
                case.steps.append(Step(kw, None, where, arg))
            elif kw == "check":
                if not re.fullmatch(r"\S+\s+(==|!=|<=|>=|<|>)\s+\S+", arg):
                    err(where, "check needs 'A OP B' (OP one of == != < <= > >=)")
                case.steps.append(Step("check", None, where, arg))
            elif kw == "unordered":
                if group is not None:
                    err(where, "unordered groups do not nest")
                ngroup += 1
                group = ngroup
            elif kw == "end":
                if group is None:
                    err(where, "end without unordered")
                group = None
            continue
        if not m:
            err(where, f"not a step: {s!r}")
        ep = f"ws{m.group('n')}" if m.group("ws") else m.group("udp")
        rest = m.group("rest")
        is_ws = ep.startswith("ws")
        if is_ws and ep not in case.ws_ids:
            case.ws_ids.append(ep)
        if rest.startswith(">"):
            opts = rest[1:].split()
            for op in opts:
                if op not in ("text", "binary", "raw", "ping-between") and not re.fullmatch(r"frag=\d+", op):
                    err(where, f"unknown send option {op!r}")
                if not is_ws and op != "raw":
                    err(where, f"{op} is for WebSocket sends only")
            block, i = take_block(i)
            case.steps.append(Step("send", ep, where, block=block, opts=opts))
        elif rest.startswith("<"):
            st = Step("recv", ep, where, arg=rest[1:].strip())
            _check_regex(st.arg, where, err)
            i = take_expects(i, st)
            st.group = group
            case.steps.append(st)
        elif rest.startswith("-"):
            mm = re.fullmatch(r"-\s*none-for\s+(\d+)", rest)
            if not mm:
                err(where, "expected '- none-for MS'")
            case.steps.append(Step("none", ep, where, mm.group(1)))
        else:
            words = rest.split(None, 1)
            if not words or not is_ws:
                err(where, f"unknown step {s!r}")
            kw, arg = words[0], (words[1] if len(words) > 1 else "")
            if kw == "handshake":
                block, i = take_block(i)
                for line in block:
                    if not (re.fullmatch(r"-[\w-]+", line.strip()) or re.match(r"[\w-]+:", line)):
                        err(where, f"handshake line {line!r} is neither 'Name: value' nor '-Name'")
                case.steps.append(Step("handshake", ep, where, arg or "/", block=block))
            elif kw == "status":
                st = Step("status", ep, where, arg or "101")
                _check_regex(st.arg, where, err)
                i = take_expects(i, st)
                case.steps.append(st)
            elif kw in ("close", "expect-close"):
                if arg and not re.fullmatch(r"\d+|none", arg):
                    err(where, f"{kw} takes a close code")
                case.steps.append(Step(kw, ep, where, arg))
            elif kw in ("abort", "shutdown", "pong"):
                case.steps.append(Step(kw, ep, where, arg))
            elif kw == "ping":
                case.steps.append(Step("ping", ep, where, arg))
            elif kw == "send-bytes":
                case.steps.append(Step("send-bytes", ep, where, arg))
            else:
                err(where, f"unknown WebSocket step {kw!r}")
    if group is not None:
        err("end of file", "unordered group not ended")
    if not case.rows:
        raise CaseError(path, 0, "no 'row:' line")
    if not case.purpose:
        raise CaseError(path, 0, "no 'purpose:' line")
    _add_implicit_handshakes(case)
    _check_references(case)
    return case


def _check_regex(pattern, where, err):
    probe = PLACEHOLDER_RE.sub("x", pattern)
    try:
        re.compile(probe)
    except re.error as e:
        err(where, f"bad regex {pattern!r}: {e}")


def _add_implicit_handshakes(case):
    """A connection used before any handshake step gets the default one (allowed Origin,
    Sec-WebSocket-Protocol: sip) and must answer 101 with Sec-WebSocket-Protocol: sip."""
    out, seen = [], set()
    steps = case.steps
    for k, st in enumerate(steps):
        if st.ep and st.ep.startswith("ws") and st.ep not in seen:
            seen.add(st.ep)
            if st.kind != "handshake":
                out.append(Step("handshake", st.ep, st.lineno, "/", block=[]))
                out.append(_default_status(st.ep, st.lineno))
        out.append(st)
        if st.kind == "handshake":
            nxt = next((s for s in steps[k + 1:] if s.ep == st.ep), None)
            if nxt is None or nxt.kind != "status":
                out.append(_default_status(st.ep, st.lineno))
    case.steps = out


def _default_status(ep, where):
    st = Step("status", ep, where, "101")
    st.expects.append(Expect("+", "Sec-WebSocket-Protocol", None, r"^sip$", None, where))
    return st


def _check_references(case):
    """Placeholders must name known things; captures and snapshots must come earlier."""
    caps, snaps, received = set(), set(), set()
    for st in case.steps:
        if st.kind == "send":
            for line in st.block:
                for m in PLACEHOLDER_RE.finditer(line):
                    kind, _, rest = m.group(1).partition(":")
                    implicit = (kind in ("copy", "val", "uri") and ":" not in rest) or \
                        (kind in ("routes", "routes-rev") and not rest)
                    if implicit and st.ep not in received:
                        raise CaseError(case.path, 0, f"{st.lineno}: {{{{{m.group(1)}}}}} refers to the "
                                        f"last message on {st.ep}, but no step received one before")
        texts = [st.arg] + (st.block or []) + [e.val or "" for e in st.expects]
        for text in texts:
            for m in PLACEHOLDER_RE.finditer(text):
                problem = check_placeholder(m.group(1), case, caps, snaps)
                if problem:
                    raise CaseError(case.path, 0, f"{st.lineno}: {{{{{m.group(1)}}}}}: {problem}")
        if st.kind == "check":
            for m in PLACEHOLDER_RE.finditer(st.arg):
                problem = check_placeholder(m.group(1), case, caps, snaps)
                if problem:
                    raise CaseError(case.path, 0, f"{st.lineno}: {problem}")
        for e in st.expects:
            if e.cap:
                caps.add(e.cap)
        snaps.update(st.save)
        if st.kind == "recv":
            received.add(st.ep)


PORT_NAMES = {"ws", "mw", "core", "ecscf", "http"}


def check_placeholder(body, case, caps, snaps):
    kind, _, rest = body.partition(":")
    if kind in ("branch", "callid", "tag", "rand") or body in ("host", "realm", "origin", "clen", "now"):
        return None
    if kind == "token":
        return None if rest in case.tokens else f"token {rest!r} not declared"
    if kind == "port":
        return None if rest in PORT_NAMES else f"port must be one of {sorted(PORT_NAMES)}"
    if kind == "cfg":
        return None if rest else "cfg needs a key"
    if kind == "cap":
        return None if rest in caps else f"capture {rest!r} not made by an earlier step"
    if kind in ("copy", "val", "uri"):
        parts = rest.split(":")
        if len(parts) == 2 and parts[0] not in snaps and not re.fullmatch(r"ws\d+|mw|ecscf", parts[0]):
            return f"snapshot {parts[0]!r} not saved earlier"
        return None if parts[-1] else "needs a header name"
    if kind in ("routes", "routes-rev"):
        if rest and rest not in snaps and not re.fullmatch(r"ws\d+|mw|ecscf", rest):
            return f"snapshot {rest!r} not saved earlier"
        return None
    if kind == "fill":
        return None if re.fullmatch(r"\d+:.+", rest) else "fill needs N:TEXT"
    return f"unknown placeholder {kind!r}"


# --------------------------------------------------------------------------------------
# Expansion of placeholders at run time

ESCAPE_RE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|r|n|t|\\)")


def unescape(data):
    """\\xNN, \\r, \\n, \\t and \\\\ in literal text (bytes in, bytes out)."""
    def sub(m):
        g = m.group(1)
        if g[:1] == b"x":
            return bytes([int(g[1:], 16)])
        return {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}[g]
    return ESCAPE_RE.sub(sub, data)


class Env:
    """Run-time values for placeholders: ports, config, tokens, memo values, captures,
    snapshots, and the last message received per endpoint."""

    def __init__(self, ports, cfg, tokens):
        self.ports = ports
        self.cfg = cfg
        self.tokens = tokens
        self.memo = {}
        self.caps = {}
        self.snaps = {}
        self.last = {}

    def _msg(self, ref, default_ep):
        if ref is None:
            ref = default_ep
        msg = self.snaps.get(ref) or self.last.get(ref)
        if msg is None:
            raise KeyError(f"no message {'saved as' if ref in self.snaps else 'received on'} {ref!r}")
        return msg

    def value(self, body, ep=None):
        """The text of one placeholder; multi-line results use CRLF between lines."""
        kind, _, rest = body.partition(":")
        if body == "host":
            return "127.0.0.1"
        if body == "realm":
            return self.cfg.get("ims.realm", "")
        if body == "origin":
            return self.cfg.get("ws.allowed_origins", "").split(",")[0].split()[0]
        if body == "now":
            import time
            return str(int(time.time()))
        if kind in ("branch", "callid", "tag", "rand"):
            if rest and (kind, rest) in self.memo:
                return self.memo[(kind, rest)]
            v = secrets.token_hex(8)
            v = {"branch": "z9hG4bK" + v, "callid": v + "@wic.test", "tag": v[:10]}.get(kind, v)
            if rest:
                self.memo[(kind, rest)] = v
            return v
        if kind == "token":
            return self.tokens[rest]
        if kind == "port":
            return str(self.ports[rest])
        if kind == "cfg":
            return self.cfg.get(rest, "")
        if kind == "cap":
            return self.caps[rest]
        if kind in ("copy", "val", "uri"):
            parts = rest.split(":")
            ref, name = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
            msg = self._msg(ref, ep)
            if kind == "copy":
                return "\r\n".join(msg.lines_of(name))
            v = msg.first(name)
            if v is None:
                raise KeyError(f"{name} absent from {msg.summary()!r}")
            return uri_of(v) if kind == "uri" else v
        if kind in ("routes", "routes-rev"):
            msg = self._msg(rest or None, ep)
            rr = msg.values("record-route")
            if kind == "routes-rev":
                rr = rr[::-1]
            return "\r\n".join(f"Route: {v}" for v in rr)
        if kind == "fill":
            n, _, text = rest.partition(":")
            n = int(n)
            return (text * (n // len(text) + 1))[:n]
        raise KeyError(f"unknown placeholder {body}")

    def text(self, s, ep=None, regex=False):
        """Expands placeholders in an expectation or argument; regex=True escapes them."""
        def sub(m):
            v = self.value(m.group(1), ep)
            return re.escape(v) if regex else v
        return PLACEHOLDER_RE.sub(sub, s)

    def message(self, block, ep, raw=False):
        """Bytes of a message block: literal parts unescaped, placeholders expanded,
        lines joined with CRLF (raw: no separators), {{clen}} = length of the body."""
        out = []
        for line in block:
            pieces = []
            pos = 0
            only = PLACEHOLDER_RE.fullmatch(line.strip()) is not None
            for m in PLACEHOLDER_RE.finditer(line):
                pieces.append(unescape(line[pos:m.start()].encode("utf-8")))
                if m.group(1) == "clen":
                    pieces.append(b"\x00CLEN\x00")
                else:
                    pieces.append(self.value(m.group(1), ep).encode("utf-8"))
                pos = m.end()
            pieces.append(unescape(line[pos:].encode("utf-8")))
            data = b"".join(pieces)
            if only and data == b"" and not raw:
                continue  # a {{copy:...}} line of an absent header disappears
            out.append(data)
        data = b"".join(out) if raw else b"".join(x + b"\r\n" for x in out)
        if b"\x00CLEN\x00" in data:
            sep = data.find(b"\r\n\r\n")
            body_len = len(data) - sep - 4 if sep >= 0 else 0
            data = data.replace(b"\x00CLEN\x00", str(body_len).encode())
        return data


# --------------------------------------------------------------------------------------
# Expectations

def check_expects(expects, msg, env, ep, opcode=None):
    """Checks a message (SipMsg, or an HTTP response adapter) against expectation lines.
    Returns (None, captures) on success or (mismatch text, {})."""
    caps = {}
    for e in expects:
        if e.name == "@start":
            vals = [msg.start]
        elif e.name == "@body":
            vals = [msg.body] if msg.body else []
        elif e.name == "@msg":
            vals = [msg.text]
        elif e.name == "@opcode":
            vals = [opcode] if opcode else []
        else:
            vals = msg.values(e.name)
        if e.idx is not None:
            k = e.idx - 1 if e.idx > 0 else e.idx
            vals = [vals[k]] if -len(vals) <= k < len(vals) else []
        where = f"{e.name}{f'[{e.idx}]' if e.idx is not None else ''}"
        shown = vals if len(str(vals)) < 400 else str(vals)[:400] + "..."
        try:
            pattern = env.text(e.val, ep, regex=e.op != "=") if e.val is not None else None
        except KeyError as ex:
            return f"{e.lineno}: {where}: {ex}", {}
        flags = re.DOTALL if e.name.startswith("@") else 0
        if e.op == "+":
            if not vals:
                return f"{e.lineno}: {where} missing", {}
            if pattern is not None and not any(re.search(pattern, v, flags) for v in vals):
                return f"{e.lineno}: {where}: none of {shown} matches /{pattern}/", {}
        elif e.op == "-":
            if pattern is None and vals:
                return f"{e.lineno}: {where} present: {shown}", {}
            if pattern is not None and any(re.search(pattern, v, flags) for v in vals):
                return f"{e.lineno}: {where} present and matching /{pattern}/: {shown}", {}
        elif e.op == "!":
            bad = [v for v in vals if re.search(pattern, v, flags)]
            if bad:
                return f"{e.lineno}: {where}: {bad} matches /{pattern}/ (must not)", {}
        elif e.op == "=":
            if pattern not in vals:
                return f"{e.lineno}: {where}: expected exactly {pattern!r}, got {shown}", {}
        elif e.op == "*":
            if len(vals) != int(pattern):
                return f"{e.lineno}: {where}: {len(vals)} instance(s), expected {pattern}: {shown}", {}
        elif e.op == "?":
            for v in vals:
                mm = re.search(pattern, v, flags)
                if mm:
                    caps[e.cap] = mm.group(1) if mm.groups() else mm.group(0)
                    break
            else:
                return f"{e.lineno}: capture {e.cap}: none of {shown} matches /{pattern}/", {}
    return None, caps


class HttpHead:
    """Adapter so expectation lines apply to a handshake response."""

    def __init__(self, status, reason, headers):
        self.start = f"{status} {reason}".strip()
        self.body = ""
        self.text = self.start + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
        self._h = [(n.lower(), v) for n, v in headers]

    def values(self, name):
        n = name.lower()
        out = []
        for hn, v in self._h:
            if hn == n and hn == "sec-websocket-protocol":
                out.extend(x.strip() for x in v.split(","))
            elif hn == n:
                out.append(v)
        return out


def eval_check(arg, env):
    """`check A OP B`: integers compare numerically, anything else as strings."""
    a, op, b = arg.split()
    a, b = env.text(a), env.text(b)
    try:
        x, y = int(a), int(b)
    except ValueError:
        x, y = a, b
        if op not in ("==", "!="):
            return f"check {a} {op} {b}: not integers"
    ok = {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    return None if ok else f"check failed: {a} {op} {b}"
