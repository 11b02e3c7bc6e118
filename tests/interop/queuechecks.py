"""Phase B's queue checks: `delivery = "queue"` and `"fallback"` against the real
Postfix stand-in (issue 12).

The proxy has two more local users on the same account: `<user>-queue` (every
message goes through the durable queue) and `<user>-fallback` (relayed while
Postfix answers, queued when it cannot). The sequence:

1. Postfix up, fallback user: a message is relayed (the reply is Postfix's own
   250, nothing stays queued) and a permanent 5xx at RCPT (`nobody@qq.com`,
   refused by the stand-in like QQ's "Mailbox not found") reaches the client
   unchanged.
2. Postfix stopped (`postfix stop`, its port closed): N messages from the queue
   user and 2 from the fallback user each get `250 2.0.0 Ok: queued as ID`, and
   `qqmail-proxy queue list` shows every ID.
3. Postfix started, `qqmail-proxy queue retry --all` (the first retry would
   otherwise wait for retry_min, 1 minute): every queued message arrives in
   Dovecot's INBOX exactly once, its body byte-identical (the same SHA-256 check
   as the relay's), its subject unchanged, its Return-Path the account; the
   queue is then empty.

Every wait is bounded and polled; Postfix is always started again, also when a
check fails, so the checks after these still have their stand-in.
"""

import re
import smtplib
import socket
import subprocess
import time

import messages as msgs
from check import expect_body, expect_subject
from clients import Fail

# Messages sent by the queue user while Postfix is down.
QUEUED = 5
# Messages sent by the fallback user while Postfix is down.
FALLBACK_QUEUED = 2
# How long the queued messages may take to arrive once Postfix is back: the
# deliverer takes a `retry` request within its 5 s scan, then one connection.
DELIVERED_WITHIN = 60.0
# The recipient the stand-in refuses permanently at RCPT (conf/postfix-main.cf.in).
UNKNOWN = "nobody@qq.com"
QUEUED_AS = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-F]{21})\s*$")


def _port_open(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _postfix(state, verb, want_open):
    """`postfix -c DIR stop|start`, then waits (bounded: 15 s) for the port to follow."""
    conf = state["postfix_conf"]
    host, port = state["direct"]["host"], state["direct"]["smtp"]
    p = subprocess.run(["postfix", "-c", conf, verb], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    deadline = time.monotonic() + 15
    while _port_open(host, port) != want_open:
        if time.monotonic() > deadline:
            raise Fail("postfix %s exited %d, port %d still %s after 15 s: %s"
                       % (verb, p.returncode, port, "closed" if want_open else "open",
                          p.stdout.decode("utf-8", "replace").strip()[-300:]))
        time.sleep(0.1)
    return "port %d %s" % (port, "open" if want_open else "closed")


def _proxy_cli(state, *args):
    """Runs `qqmail-proxy --config CONFIG queue ...` with serve's environment."""
    px = state["proxy"]
    argv = [px["bin"], "--config", px["config"], "queue"] + list(args)
    env = {"QQMAIL_AUTH_CODE": state["code"], "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, env=env)
    if p.returncode != 0:
        raise Fail("`queue %s` exited %d: %s" % (" ".join(args), p.returncode,
                                                 p.stderr.decode("utf-8", "replace").strip()[-300:]))
    return p.stdout.decode("utf-8", "replace")


def _body_8bit(s):
    # The messages are 8-bit (Chinese text): say so when offered (RFC 6152).
    return ["BODY=8BITMIME"] if s.has_extn("8bitmime") else []


class Sender:
    """One local user of the proxy, sending one message per session (as a printer does)."""

    def __init__(self, state, user, label):
        px = state["proxy"]
        self.host, self.port = px["host"], px["smtp"]
        self.user, self.password = user, px["password"]
        self.email = state["email"]
        self.label = label

    def send(self, rcpt=None):
        """Sends a fresh message; returns (mid, message, final reply bytes).

        A refused RCPT raises Fail carrying the reply (see `refused`)."""
        mid = msgs.new_id(self.label)
        msg = msgs.small_message(mid, self.email, self.email, self.label)
        s = smtplib.SMTP(self.host, self.port, timeout=60)
        try:
            s.ehlo("queue.interop.test")
            s.login(self.user, self.password)
            code, reply = s.mail(self.email, _body_8bit(s))
            if code != 250:
                raise Fail("MAIL FROM: %d %r" % (code, reply[:200]))
            code, reply = s.rcpt(rcpt or self.email)
            if code not in (250, 251):
                raise Fail("RCPT TO:<%s>: %d %s" % (rcpt or self.email, code,
                                                      reply.decode("utf-8", "replace")))
            code, reply = s.data(msg)
            return mid, msg, b"%d %s" % (code, reply)
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def refused(self, rcpt):
        """(code, reply) for RCPT TO:<rcpt> after a successful login and MAIL."""
        s = smtplib.SMTP(self.host, self.port, timeout=60)
        try:
            s.ehlo("queue.interop.test")
            s.login(self.user, self.password)
            code, _ = s.mail(self.email, _body_8bit(s))
            if code != 250:
                raise Fail("MAIL FROM refused: %d" % code)
            return s.rcpt(rcpt)
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass


def _queued_id(reply, who):
    m = QUEUED_AS.match(reply)
    if not m:
        raise Fail("%s: want `250 2.0.0 Ok: queued as ID` (21 hex digits), got %r"
                   % (who, reply[:200]))
    return m.group(1).decode()


class QueueChecks:
    """The checks, in order; shared state is what was queued."""

    def __init__(self, state, runner, up):
        self.state, self.r, self.up = state, runner, up
        user = state["proxy"]["user"]
        self.queue = Sender(state, user + "-queue", "queue")
        self.fallback = Sender(state, user + "-fallback", "fallback")
        self.sent = []  # (queue id, mid, message, label) of everything queued while Postfix was down

    def fallback_up_relayed(self):
        mid, msg, reply = self.fallback.send()
        if QUEUED_AS.match(reply) or not reply.startswith(b"250 "):
            raise Fail("want Postfix's own 250 (relayed), got %r" % reply[:200])
        raw = self.up.wait(mid)
        expect_body(raw, msgs.body_sha256(msg), "relayed copy")
        listing = _proxy_cli(self.state, "list")
        if "Mail queue is empty" not in listing:
            raise Fail("a relayed message left something in the queue:\n%s" % listing[:500])
        return "relayed: %s; queue empty" % reply.decode("utf-8", "replace").strip()

    def fallback_up_permanent_passes(self):
        code, reply = self.fallback.refused(UNKNOWN)
        text = reply.decode("utf-8", "replace")
        if code != 550 or "Mailbox not found" not in text:
            raise Fail("RCPT TO:<%s>: want the stand-in's 550 Mailbox not found, got %d %s"
                       % (UNKNOWN, code, text))
        return "%d %s" % (code, text)

    def postfix_stop(self):
        return _postfix(self.state, "stop", False)

    def queue_accepts_while_down(self):
        for _ in range(QUEUED):
            mid, msg, reply = self.queue.send()
            self.sent.append((_queued_id(reply, "queue user"), mid, msg, self.queue.label))
        return "%d x 250 queued as ID" % QUEUED

    def fallback_queues_while_down(self):
        for _ in range(FALLBACK_QUEUED):
            mid, msg, reply = self.fallback.send()
            self.sent.append((_queued_id(reply, "fallback user"), mid, msg, self.fallback.label))
        return "%d x 250 queued as ID (upstream unreachable)" % FALLBACK_QUEUED

    def list_shows_queued(self):
        if not self.sent:
            raise Fail("nothing was queued")
        listing = _proxy_cli(self.state, "list")
        missing = [qid for qid, _, _, _ in self.sent if qid not in listing]
        if missing:
            raise Fail("`queue list` lacks %s:\n%s" % (", ".join(missing), listing[:800]))
        want = "-- %d messages" % len(self.sent)
        if want not in listing:
            raise Fail("want %r in `queue list`:\n%s" % (want, listing[-300:]))
        return "%d IDs listed" % len(self.sent)

    def postfix_start(self):
        return _postfix(self.state, "start", True)

    def retry_all(self):
        out = _proxy_cli(self.state, "retry", "--all").strip()
        if out != "done":
            raise Fail("`queue retry --all` printed %r, want 'done' (is serve running?)" % out[:200])
        return "done"

    def delivered_once(self):
        if not self.sent:
            raise Fail("nothing was queued")
        deadline = time.monotonic() + DELIVERED_WITHIN
        for qid, mid, msg, label in self.sent:
            raw = self.up.wait(mid, timeout=max(1.0, deadline - time.monotonic()))
            expect_body(raw, msgs.body_sha256(msg), "delivered copy of %s" % qid)
            expect_subject(raw, label, mid)
            rp = msgs.header(raw, "Return-Path")
            if rp != ("<%s>" % self.state["email"]).encode():
                raise Fail("%s: Return-Path %r, want <%s>" % (qid, rp, self.state["email"]))
        # Every one is in; now none may be there twice (or arrive twice a bit later:
        # the deliverer removes each file only after Postfix's 250).
        self._gone_from_queue()
        twice = [(mid, n) for _, mid, _, _ in self.sent if (n := self.up.copies(mid)) != 1]
        if twice:
            raise Fail("copies in INBOX: %s" % ", ".join("%s=%d" % t for t in twice))
        return "%d delivered, byte-identical, one copy each; queue empty" % len(self.sent)

    def _gone_from_queue(self):
        deadline = time.monotonic() + 15
        while True:
            listing = _proxy_cli(self.state, "list")
            if "Mail queue is empty" in listing:
                return
            if time.monotonic() > deadline:
                raise Fail("queue not empty 15 s after delivery:\n%s" % listing[:800])
            time.sleep(0.2)

    def run_all(self, name):
        self.r.check(name("fallback-up-relayed"), self.fallback_up_relayed)
        self.r.check(name("fallback-up-permanent-5xx-passes"), self.fallback_up_permanent_passes)
        stopped = self.r.check(name("postfix-stopped"), self.postfix_stop)
        try:
            if stopped:
                self.r.check(name("queue-250-while-down"), self.queue_accepts_while_down)
                self.r.check(name("fallback-250-queued-while-down"), self.fallback_queues_while_down)
                self.r.check(name("queue-list-shows-them"), self.list_shows_queued)
        finally:
            started = self.r.check(name("postfix-started"), self.postfix_start)
        if stopped and started:
            self.r.check(name("queue-retry-all"), self.retry_all)
            self.r.check(name("queued-delivered-once"), self.delivered_once)


def phase_queue(state, runner, up):
    QueueChecks(state, runner, up).run_all(lambda check: "proxy-queue/%s" % check)
