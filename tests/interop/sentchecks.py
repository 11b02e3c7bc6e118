"""Phase B's Sent-copy check (issue 17 item 3): `[[account]] save_sent = "on"`.

The proxy has one more account, `sent`: the same mailbox and code as `main`, with
save_sent on, used by the local user `<user>-sent`. A message it sends is relayed
through Postfix (delivered to INBOX) and, after Postfix's 250, APPENDed by the proxy
to the folder Dovecot marks \\Sent (SPECIAL-USE, RFC 6154). The check reads that
folder directly: the copy is there once, flagged \\Seen, byte for byte what the
client sent (the message has Date, Message-ID and From, so the proxy adds nothing).
The `main` account (save_sent off) appends nothing: its messages never show up there.
"""

import re
import time

import messages as msgs
from clients import Fail, imap_connect
from queuechecks import Sender

# How long the background APPEND may take after the client's 250.
SENT_TIMEOUT = 20.0


def sent_folder(m):
    """The name of the mailbox Dovecot marks \\Sent."""
    typ, data = m.list('""', '"*"')
    if typ != "OK":
        raise Fail("LIST: %r" % ((typ, data),))
    for line in data or []:
        if isinstance(line, bytes) and re.search(rb"\(([^)]*\s)?\\Sent(\s[^)]*)?\)", line, re.I):
            return line.rsplit(b" ", 1)[-1].strip(b'"').decode()
    raise Fail("no mailbox marked \\Sent in LIST: %r" % (data,))


def find_in(m, folder, mid, timeout):
    """[(flags, raw)] of the messages in `folder` with X-Interop-Id `mid`, waiting up
    to `timeout` for the first."""
    deadline = time.monotonic() + timeout
    while True:
        m.select('"%s"' % folder, readonly=True)
        typ, data = m.uid("SEARCH", "HEADER", "X-Interop-Id", mid)
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        if uids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    found = []
    for uid in uids:
        typ, data = m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
        for item in data or []:
            if isinstance(item, tuple):
                found.append((item[0], item[1]))
    return found


def sent_copy(state, up):
    user = state["proxy"]["user"]
    mid, msg, reply = Sender(state, user + "-sent", "sent").send()
    if not reply.startswith(b"250 "):
        raise Fail("want 250 for the message, got %r" % reply[:200])
    up.wait(mid)
    m = imap_connect(up.t)
    try:
        folder = sent_folder(m)
        copies = find_in(m, folder, mid, SENT_TIMEOUT)
        if len(copies) != 1:
            raise Fail("%d copies in %s within %.0fs, want 1" % (len(copies), folder, SENT_TIMEOUT))
        flags, raw = copies[0]
        if b"\\Seen" not in flags:
            raise Fail("copy not \\Seen: %r" % flags[:200])
        if raw != msg:
            raise Fail("copy differs from what was sent: %d bytes (sha %s) vs %d (sha %s)"
                       % (len(raw), msgs.sha256(raw)[:12], len(msg), msgs.sha256(msg)[:12]))
        # save_sent off (the main account): nothing appended.
        other, _, reply = Sender(state, user, "not-sent").send()
        if not reply.startswith(b"250 "):
            raise Fail("want 250 for the save_sent = off message, got %r" % reply[:200])
        up.wait(other)
        # The "on" copy came within a second or so above; give "off" the same chance.
        if find_in(m, folder, other, 3.0):
            raise Fail("save_sent = off: a copy of %s appeared in %s" % (other, folder))
    finally:
        try:
            m.logout()
        except Exception:
            pass
    return "in %s (\\Sent), \\Seen, %d bytes identical; off: none" % (folder, len(raw))


def phase_sent(state, runner, up):
    runner.check("proxy-sent/save-sent-copy", sent_copy, state, up)
