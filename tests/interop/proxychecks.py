"""Phase B of the interop suite: the same clients through qqmail-proxy.

On top of phase A's checks (run against the proxy in plaintext and with
STARTTLS, as the local user), this owns what only the proxy does: a printer
that sends MAIL FROM:<scanner@printer.local> without AUTH, envelope-sender
rewriting, the queue and fallback delivery modes with Postfix stopped and
started (queuechecks.py), the save_sent copy in Dovecot's Sent folder
(sentchecks.py), rejection of wrong local credentials (and of the real code used as
a local password), logs free of the code and its base64 forms, upstream
logins that Dovecot/Postfix saw with the code, and phase A == phase B hashes.
"""

import base64
import imaplib
import json
import os
import poplib
import re
import smtplib
import socket
import sys

import messages as msgs
import queuechecks
import sentchecks
from check import Phase, save_hashes, target
from clients import Fail


def print_listeners(logpath):
    """Prints "SMTP IMAP POP3" ports from the proxy's JSON "listening" lines."""
    ports = {}
    with open(logpath, "rb") as f:
        for raw in f:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            # tracing-subscriber nests event fields under "fields" unless
            # flattened; accept both.
            fields = dict(event)
            if isinstance(event.get("fields"), dict):
                fields.update(event["fields"])
            if fields.get("message") != "listening":
                continue
            addr = str(fields.get("addr", ""))
            port = addr.rpartition(":")[2]
            if fields.get("protocol") in ("smtp", "imap", "pop3") and port.isdigit():
                ports.setdefault(fields["protocol"], int(port))
    missing = [p for p in ("smtp", "imap", "pop3") if p not in ports]
    if missing:
        print("no 'listening' line for %s in %s" % (", ".join(missing), logpath), file=sys.stderr)
        return 1
    print(ports["smtp"], ports["imap"], ports["pop3"])
    return 0


# --- printer without AUTH -------------------------------------------------------


class RawSmtp:
    """A minimal line-level SMTP client, the way a printer's firmware talks."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.f = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline(100000)
            if not line:
                raise Fail("connection closed after %r" % b"".join(lines)[-200:])
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    def cmd(self, line, want):
        if line is not None:
            self.sock.sendall(line + b"\r\n")
        code, text = self.reply()
        if code // 100 != want:
            raise Fail("%r -> %r" % (line, text[:200]))
        return text

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, Fail):
            pass
        self.sock.close()


def printer_send(phase, hello):
    t = phase.t
    mid = msgs.new_id("printer")
    msg = msgs.small_message(mid, "scanner@printer.local", t.email, "printer")
    s = RawSmtp(t.host, t.smtp)
    try:
        s.cmd(None, 2)
        s.cmd(hello + b" scanner.printer.local", 2)
        s.cmd(b"MAIL FROM:<scanner@printer.local>", 2)
        s.cmd(("RCPT TO:<%s>" % t.email).encode(), 2)
        s.cmd(b"DATA", 3)
        # RFC 5321 4.5.2: a line starting with "." gets one more.
        s.sock.sendall(re.sub(rb"(?m)^\.", b"..", msg) + b".\r\n")
        s.cmd(None, 2)
    finally:
        s.close()
    raw = phase.up.wait(mid)
    if msgs.body_sha256(raw) != msgs.body_sha256(msg):
        raise Fail("delivered body differs from the printer's")
    rp = msgs.header(raw, "Return-Path")
    if rp != ("<%s>" % t.email).encode():
        raise Fail("Return-Path %r, want <%s> (envelope rewrite)" % (rp, t.email))
    return "%s, no AUTH, Return-Path %s" % (hello.decode(), rp.decode())


# --- local credentials ------------------------------------------------------------


def local_credentials_rejected(t, code):
    """Wrong local password, and the real code as a local password, both refused."""
    tried = []
    for label, user, pw in (("wrong password", t.user, "not-the-password"), ("code as password", t.user, code)):
        s = smtplib.SMTP(t.host, t.smtp, timeout=30)
        try:
            s.ehlo("bad.interop.test")
            try:
                s.login(user, pw)
                raise Fail("SMTP AUTH accepted the %s" % label)
            except smtplib.SMTPAuthenticationError as e:
                tried.append("smtp %d" % e.smtp_code)
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
        m = imaplib.IMAP4(t.host, t.imap, timeout=30)
        try:
            m.login(user, pw)
            raise Fail("IMAP LOGIN accepted the %s" % label)
        except imaplib.IMAP4.error:
            tried.append("imap NO")
        finally:
            try:
                m.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        p = poplib.POP3(t.host, t.pop3, timeout=30)
        try:
            p.user(user)
            p.pass_(pw)
            raise Fail("POP3 PASS accepted the %s" % label)
        except poplib.error_proto:
            tried.append("pop3 -ERR")
        finally:
            try:
                p.quit()
            except (poplib.error_proto, OSError):
                pass
    return ", ".join(sorted(set(tried)))


# --- logs -----------------------------------------------------------------------


def base64_fragments(secret):
    """Base64 text that any encoding of a stream containing `secret` must contain.

    Base64 maps 3-byte groups to 4 characters, so the secret shows up in one
    of 3 alignments; for each, keep only the characters computed from the
    secret's bytes alone.
    """
    out = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + secret).rstrip(b"=")
        first = -(-8 * pad // 6)  # first char whose 6 bits start inside the secret
        last = (8 * (pad + len(secret))) // 6  # chars wholly inside the secret
        out.append(enc[first:last])
    return out


def log_free_of(path, secret, what):
    with open(path, "rb") as f:
        log = f.read()
    lines = log.count(b"\n")
    if lines == 0:
        raise Fail("%s is empty: nothing to prove" % path)
    needles = [secret] + base64_fragments(secret)
    # Also the shapes a careless Debug/hex dump of the bytes would take.
    needles.append(secret.hex().encode())
    needles.append(", ".join(str(b) for b in secret).encode())
    for n in needles:
        if n and n in log:
            where = log.find(n)
            line_no = log.count(b"\n", 0, where) + 1
            raise Fail("the %s (or its base64 form %r) is in the proxy log, line %d" % (what, n[:6] + b"...", line_no))
    levels = sorted(set(re.findall(rb'"level":"([A-Z]+)"', log)))
    return "%d lines, levels %s" % (lines, b"/".join(levels).decode() or "?")


def region(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def upstream_saw_code(state, checker_ports):
    """Dovecot and Postfix logged logins as the account, from the proxy."""
    dv = region(state["logs"]["dovecot"], state["logs"]["dovecot_offset"])
    pf = region(state["logs"]["postfix"], state["logs"]["postfix_offset"])
    email = re.escape(state["email"])

    def proxy_logins(service):
        pat = re.compile(r"%s-login: Info: Login: user=<%s>.*?rport=(\d+)" % (service, email))
        return [m for m in pat.finditer(dv) if int(m.group(1)) not in checker_ports]

    imap, pop3 = proxy_logins("imap"), proxy_logins("pop3")
    smtp = re.findall(r"sasl_username=%s\b" % email, pf)
    bad = re.findall(r".*(?:Password mismatch|auth failed|authentication failed).*", dv + pf)
    if not imap or not pop3 or not smtp:
        raise Fail("upstream logins as %s: imap %d, pop3 %d, smtp %d (want >= 1 each)"
                   % (state["email"], len(imap), len(pop3), len(smtp)))
    if bad:
        raise Fail("upstream saw failed logins during phase B: %s" % bad[0][:200])
    # The passwd-file holds only the code, so each success proves the proxy
    # presented it.
    return "imap %d, pop3 %d, smtp %d logins, 0 failures" % (len(imap), len(pop3), len(smtp))


def transparent(state, hashes):
    with open(os.path.join(state["tmp"], "hashes-direct.json")) as f:
        direct = json.load(f)
    if not direct:
        raise Fail("phase A recorded no hashes")
    diff = []
    for key, want in sorted(direct.items()):
        got = hashes.get(key)
        if got != want:
            diff.append("%s: A %s, B %s" % (key, want[:12], (got or "missing")[:12]))
    if diff:
        raise Fail("; ".join(diff))
    return "%d hashes equal (sent, delivered, attachment, each reader)" % len(direct)


def phase_proxy(state, runner, up):
    hashes = {}
    plain = Phase(runner, up, target(state, "proxy", "plain", "proxy-plain"), True, hashes)
    plain.run_all(
        extra=[
            ("smtp-sender-rewrite", plain.smtp_sender_rewrite),
            ("smtp-printer-noauth", lambda: printer_send(plain, b"EHLO")),
            ("smtp-printer-helo-noauth", lambda: printer_send(plain, b"HELO")),
        ]
    )
    save_hashes(state, "proxy", hashes)
    stls = Phase(runner, up, target(state, "proxy", "starttls", "proxy-starttls"), False, {})
    stls.run_all()
    # Before the log checks, so that they cover the queue's deliveries too.
    queuechecks.phase_queue(state, runner, up)
    sentchecks.phase_sent(state, runner, up)
    runner.check("proxy/local-credentials-rejected", local_credentials_rejected, plain.t, state["code"])
    runner.check("proxy/transparent-A-equals-B", transparent, state, hashes)
    logs = state["logs"]
    runner.check("proxy/log-free-of-code", log_free_of, logs["proxy"], state["code"].encode(), "code")
    pw = state["proxy"]["password"].encode()
    runner.check("proxy/log-free-of-local-password", log_free_of, logs["proxy"], pw, "local password")
    runner.check("proxy/upstream-logins-with-code", upstream_saw_code, state, up.ports)
