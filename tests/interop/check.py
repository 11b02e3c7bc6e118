#!/usr/bin/env python3
"""Client-side checks of the qqmail-proxy interop suite (run by run.sh).

Usage:
  check.py STATE.json direct    phase A: clients -> stand-in (implicit TLS, code)
  check.py STATE.json proxy     phase B: clients -> qqmail-proxy -> stand-in
  check.py --listeners LOG      print the proxy's "SMTP IMAP POP3" ports

Each check prints one line, `PASS <target>/<name> ...` or
`FAIL <target>/<name>: reason`, and appends it to the results file that
run.sh counts. Deliveries are confirmed on a direct IMAP connection to the
stand-in (the ground truth, independent of the proxy), polled with a bounded
deadline, never a fixed sleep.
"""

import json
import os
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import clients  # noqa: E402
import messages as msgs  # noqa: E402
from clients import Fail, Target  # noqa: E402

DELIVERY_TIMEOUT = 20.0
IDLE_LIMIT = 2.0


class Runner:
    """Runs named checks, prints and records PASS/FAIL lines."""

    def __init__(self, results):
        self.results = results

    def check(self, name, fn, *args):
        start = time.monotonic()
        try:
            detail = fn(*args)
        except Fail as e:
            self._record("FAIL %s: %s" % (name, e))
            return None
        except Exception as e:  # a crash in a client library is a failure too
            tb = traceback.format_exc().strip().splitlines()[-1]
            self._record("FAIL %s: %s: %s (%s)" % (name, type(e).__name__, e, tb))
            return None
        took = time.monotonic() - start
        self._record("PASS %s (%.1fs%s)" % (name, took, ", " + detail if detail else ""))
        return True

    def _record(self, line):
        line = " ".join(line.splitlines())
        print(line, flush=True)
        with open(self.results, "a") as f:
            f.write(line + "\n")


class Upstream:
    """Direct IMAPS session to the stand-in: where deliveries are confirmed."""

    def __init__(self, state):
        d = state["direct"]
        self.t = Target(
            "upstream", d["host"], d["smtp"], d["imap"], d["pop3"], "implicit",
            state["email"], state["code"], state["ca"], state["email"], "", "", "",
        )
        self.m = None
        # Local ports of these connections, so phase B can tell the proxy's
        # upstream logins in dovecot.log (rport=) from the checker's own.
        self.ports = set()

    def _conn(self):
        if self.m is None:
            self.m = clients.imap_connect(self.t)
            self.ports.add(self.m.sock.getsockname()[1])
            self.m.select("INBOX")
        return self.m

    def wait(self, mid, timeout=DELIVERY_TIMEOUT):
        """Raw bytes of the message with X-Interop-Id `mid`, once delivered."""
        deadline = time.monotonic() + timeout
        while True:
            m = self._conn()
            m.noop()
            uid = clients.imap_find(m, mid)
            if uid is not None:
                return clients.imap_fetch_uid(m, uid)
            if time.monotonic() > deadline:
                raise Fail("not delivered within %.0fs (X-Interop-Id %s)" % (timeout, mid))
            time.sleep(0.1)

    def copies(self, mid):
        """How many INBOX messages carry X-Interop-Id `mid` (a duplicate shows as 2)."""
        m = self._conn()
        m.noop()
        typ, data = m.uid("SEARCH", "HEADER", "X-Interop-Id", mid)
        if typ != "OK":
            raise Fail("UID SEARCH for %s: %r" % (mid, (typ, data)))
        return len(data[0].split()) if data and data[0] else 0

    def count(self):
        m = self._conn()
        typ, data = m.select("INBOX", readonly=True)
        self.m.select("INBOX")
        return int(data[0])


def expect_body(raw, want_sha, what):
    got = msgs.body_sha256(raw)
    if got != want_sha:
        raise Fail("%s: body SHA-256 %s != sent %s" % (what, got[:16], want_sha[:16]))


def expect_subject(raw, label, mid):
    subj = msgs.header(raw, "Subject")
    if subj != msgs.subject_bytes(label, mid):
        raise Fail("8-bit subject changed: %r" % (subj[:80] if subj else None,))


class Phase:
    """The checks of one target (direct, proxy-plain or proxy-starttls)."""

    def __init__(self, runner, upstream, t, big, hashes):
        self.r = runner
        self.up = upstream
        self.t = t
        self.big = big  # send (and read back) the 20 MiB message here
        self.hashes = hashes
        self.read_id = None  # a delivered message the read checks look for
        self.read_sha = None
        self.neomutt_id = None
        os.makedirs(t.workdir, exist_ok=True)

    def name(self, check):
        return "%s/%s" % (self.t.label, check)

    def _deliver(self, label, send):
        """Builds a small message, sends it with `send(msg, path)`, confirms it."""
        mid = msgs.new_id(label)
        msg = msgs.small_message(mid, self.t.email, self.t.email, label)
        path = clients.write_file(self.t, label + ".eml", msg, 0o644)
        send(msg, path)
        raw = self.up.wait(mid)
        expect_body(raw, msgs.body_sha256(msg), "delivered copy")
        expect_subject(raw, label, mid)
        if self.read_id is None:
            self.read_id, self.read_sha = mid, msgs.body_sha256(msg)
        return mid

    def smtp_swaks(self):
        self._deliver("swaks", lambda m, _p: clients.swaks_send(self.t, m))
        return "AUTH LOGIN"

    def smtp_msmtp(self):
        self._deliver("msmtp", lambda m, _p: clients.msmtp_send(self.t, m))
        return "AUTH PLAIN"

    def smtp_curl(self):
        self._deliver("curl", lambda _m, p: clients.curl_send(self.t, p))

    def smtp_smtplib(self):
        self._deliver("smtplib", lambda m, _p: clients.smtplib_send(self.t, m))

    def smtp_smtplib_big(self):
        mid = msgs.new_id("big")
        msg = msgs.big_message(mid, self.t.email, self.t.email, "big")
        sent_sha = msgs.body_sha256(msg)
        took = clients.smtplib_send(self.t, msg)
        raw = self.up.wait(mid, timeout=60)
        expect_body(raw, sent_sha, "delivered 20 MiB message")
        expect_subject(raw, "big", mid)
        att = msgs.decoded_attachment_sha256(raw)
        if att != msgs.attachment_sha256():
            raise Fail("attachment SHA-256 %s != %s" % (att, msgs.attachment_sha256()))
        if not msgs.text_matches(raw):
            raise Fail("Chinese text part changed")
        self.read_id, self.read_sha = mid, sent_sha
        self.hashes["big_sent"] = sent_sha
        self.hashes["big_delivered"] = msgs.body_sha256(raw)
        self.hashes["big_attachment"] = att
        return "%.1f MB in %.1fs" % (len(msg) / 1e6, took)

    def smtp_neomutt(self):
        mid = msgs.new_id("neomutt")
        subject = msgs.subject_bytes("neomutt", mid).decode("utf-8")
        clients.neomutt_send(self.t, subject, mid, msgs.BODY_TEXT)
        raw = self.up.wait(mid)
        if not msgs.text_matches(raw):
            raise Fail("decoded body differs from what neomutt was given")
        self.neomutt_id = mid
        return "send with -e my_hdr"

    def smtp_sender_mismatch(self):
        """Direct: the stand-in refuses a MAIL FROM other than the login."""
        code, reply = clients.smtplib_mail_from(self.t, "someone@example.com")
        if code < 500:
            raise Fail("MAIL FROM:<someone@example.com> got %d %r, want a 5xx" % (code, reply))
        return "%d %s" % (code, reply.decode("utf-8", "replace")[:60])

    def smtp_sender_rewrite(self):
        """Proxy: the same foreign MAIL FROM is rewritten to the account and delivered."""
        mid = msgs.new_id("rewrite")
        msg = msgs.small_message(mid, "someone@example.com", self.t.email, "rewrite")
        clients.smtplib_send(self.t, msg, mail_from="someone@example.com")
        raw = self.up.wait(mid)
        expect_body(raw, msgs.body_sha256(msg), "delivered copy")
        rp = msgs.header(raw, "Return-Path")
        if rp != ("<%s>" % self.t.email).encode():
            raise Fail("Return-Path %r, want <%s>" % (rp, self.t.email))
        return "Return-Path %s" % rp.decode()

    def _read(self, what, fetch):
        if self.read_id is None:
            raise Fail("nothing to read: every send in this phase failed")
        raw = fetch(self.read_id)
        expect_body(raw, self.read_sha, what)
        if self.big:
            self.hashes["big_" + what.replace("-", "_")] = msgs.body_sha256(raw)
        return "%.1f MB" % (len(raw) / 1e6)

    def imap_curl(self):
        return self._read("curl-imap", lambda mid: clients.curl_imap_fetch(self.t, mid))

    def imap_imaplib(self):
        auth = "plain" if self.t.tls == "starttls" else "login"
        detail = self._read("imaplib", lambda mid: clients.imaplib_fetch(self.t, mid, auth))
        return "%s, %s" % ("AUTHENTICATE PLAIN" if auth == "plain" else "LOGIN", detail)

    def pop3_curl(self):
        return self._read("curl-pop3", lambda mid: clients.curl_pop3_fetch(self.t, mid))

    def pop3_poplib(self):
        return self._read("poplib", lambda mid: clients.poplib_fetch(self.t, mid))

    def imap_mbsync(self):
        files = clients.mbsync_sync(self.t)
        want = self.up.count()
        if len(files) != want:
            raise Fail("synced %d messages, INBOX has %d" % (len(files), want))
        if self.read_id is None:
            raise Fail("nothing to compare: every send in this phase failed")
        for path in files:
            with open(path, "rb") as f:
                if self.read_id.encode() not in f.read(16384):
                    continue
                f.seek(0)
                raw = f.read()
            expect_body(raw, self.read_sha, "mbsync copy")
            if self.big:
                self.hashes["big_mbsync"] = msgs.body_sha256(raw)
            return "%d messages" % len(files)
        raise Fail("synced maildir lacks X-Interop-Id %s" % self.read_id)

    def imap_neomutt_list(self):
        if self.neomutt_id is None:
            raise Fail("nothing to list: the neomutt send failed")
        raw = clients.neomutt_list(self.t, self.neomutt_id)
        if msgs.header(raw, "X-Interop-Id") != self.neomutt_id.encode():
            raise Fail("piped message is not the one neomutt sent")
        if not msgs.text_matches(raw):
            raise Fail("piped message body differs")
        return "opened INBOX, found and piped the message"

    def imap_idle(self):
        m = clients.imap_connect(self.t)
        try:
            typ, data = m.select("INBOX")
            before = int(data[0])
            m.send(b"I1 IDLE\r\n")
            cont = m.readline()
            if not cont.startswith(b"+"):
                raise Fail("IDLE not accepted: %r" % cont[:100])
            mid = msgs.new_id("idle")
            msg = msgs.small_message(mid, self.t.email, self.t.email, "idle")
            clients.smtplib_send(self.t, msg)
            sent = time.monotonic()
            while True:
                left = IDLE_LIMIT - (time.monotonic() - sent)
                if left <= 0:
                    raise Fail("no EXISTS within %.0fs of the send" % IDLE_LIMIT)
                m.sock.settimeout(left)
                try:
                    line = m.readline()
                except (socket.timeout, TimeoutError):
                    raise Fail("no EXISTS within %.0fs of the send" % IDLE_LIMIT)
                if not line:
                    raise Fail("connection closed during IDLE")
                parts = line.split()
                if len(parts) >= 3 and parts[2].upper() == b"EXISTS" and int(parts[1]) > before:
                    took = time.monotonic() - sent
                    break
            m.sock.settimeout(30)
            m.send(b"DONE\r\n")
            while not m.readline().startswith(b"I1 "):
                pass
            return "EXISTS %.2fs after the send" % took
        finally:
            try:
                m.logout()
            except Exception:
                pass

    def run_all(self, extra=()):
        send = [("smtp-swaks", self.smtp_swaks), ("smtp-msmtp", self.smtp_msmtp), ("smtp-curl", self.smtp_curl)]
        if self.big:
            send.append(("smtp-smtplib-20MiB-chinese", self.smtp_smtplib_big))
        else:
            send.append(("smtp-smtplib", self.smtp_smtplib))
        send.append(("smtp-neomutt", self.smtp_neomutt))
        read = [
            ("imap-curl", self.imap_curl),
            ("imap-imaplib", self.imap_imaplib),
            ("pop3-curl", self.pop3_curl),
            ("pop3-poplib", self.pop3_poplib),
            ("imap-mbsync", self.imap_mbsync),
            ("imap-neomutt-list", self.imap_neomutt_list),
            ("imap-idle", self.imap_idle),
        ]
        for check, fn in send + list(extra) + read:
            self.r.check(self.name(check), fn)


def target(state, which, tls, label):
    s = state[which]
    user = state["email"] if which == "direct" else s["user"]
    password = state["code"] if which == "direct" else s["password"]
    work = os.path.join(state["tmp"], "work", label)
    logs = os.path.join(state["tmp"], "logs")
    # The certificate the client will be shown: the stand-in's, or the proxy's
    # local one (for STARTTLS). Only mbsync uses it (see clients.mbsync_sync).
    pin = os.path.join(state["tmp"], "server-cert.pem" if which == "direct" else "local-cert.pem")
    return Target(label, s["host"], s["smtp"], s["imap"], s["pop3"], tls, user, password,
                  state["ca"], state["email"], work, logs, pin)


def phase_direct(state, runner, up):
    hashes = {}
    p = Phase(runner, up, target(state, "direct", "implicit", "direct"), True, hashes)
    p.run_all(extra=[("smtp-sender-mismatch", p.smtp_sender_mismatch)])
    save_hashes(state, "direct", hashes)


def save_hashes(state, phase, hashes):
    with open(os.path.join(state["tmp"], "hashes-%s.json" % phase), "w") as f:
        json.dump(hashes, f, indent=2, sort_keys=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--listeners":
        import proxychecks

        return proxychecks.print_listeners(sys.argv[2])
    if len(sys.argv) != 3 or sys.argv[2] not in ("direct", "proxy"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        state = json.load(f)
    runner = Runner(state["results"])
    up = Upstream(state)
    if sys.argv[2] == "direct":
        phase_direct(state, runner, up)
    else:
        import proxychecks

        proxychecks.phase_proxy(state, runner, up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
