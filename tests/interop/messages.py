"""Test messages of the interop suite and how delivered copies are compared.

Every message carries an `X-Interop-Id` header (unique per check) so it can
be found again, a raw 8-bit UTF-8 Chinese subject, and an 8-bit Chinese body
with a line that starts with a dot (dot-stuffing must be undone exactly).
The big message adds a 20 MiB attachment made from a fixed seed, so its body
hash is the same in every phase and run.

"Body" means everything after the first empty line, with line endings
normalized to CRLF (maildir stores LF; IMAP and POP3 hand back CRLF). Headers
are not compared: Postfix and Dovecot add Received, Return-Path, Delivered-To.
"""

import base64
import email
import email.policy
import hashlib
import random
import re
import uuid
from email.utils import formatdate

BODY_TEXT = (
    "你好，世界！这是一封互通测试邮件。\r\n"
    "第二行：中文正文，以 8 位方式传输，不做任何编码。\r\n"
    ".这一行以点开头，检验点填充（dot-stuffing）是否被正确还原。\r\n"
    "ASCII line: the quick brown fox jumps over the lazy dog 0123456789.\r\n"
)
SUBJECT_PREFIX = "互通测试 邮件"
ATTACHMENT_SIZE = 20 * 1024 * 1024
ATTACHMENT_SEED = 20240505
BOUNDARY = "=_interop_boundary_7f3a9c"


def new_id(label):
    """A fresh id for one check's message, readable in logs."""
    return "%s-%s" % (label, uuid.uuid4().hex[:12])


def normalize(raw):
    """Line endings to CRLF."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def split(raw):
    """(header block, body) of a message, CRLF-normalized."""
    raw = normalize(raw)
    at = raw.find(b"\r\n\r\n")
    if at < 0:
        return raw, b""
    return raw[: at + 2], raw[at + 4 :]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def body_sha256(raw):
    return sha256(split(raw)[1])


def header(raw, name):
    """First header `name` as raw bytes (unfolded), or None."""
    head = split(raw)[0]
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", head)
    pat = re.compile(rb"^" + re.escape(name.encode()) + rb":[ \t]*(.*)$", re.I | re.M)
    m = pat.search(unfolded)
    return m.group(1).rstrip(b"\r") if m else None


def _headers(mid, sender, to, label, content_type, cte):
    subject = "%s %s %s" % (SUBJECT_PREFIX, label, mid)
    lines = [
        "From: %s" % sender,
        "To: %s" % to,
        "Subject: %s" % subject,
        "Date: %s" % formatdate(localtime=True),
        "Message-ID: <%s@interop.test>" % mid,
        "X-Interop-Id: %s" % mid,
        "MIME-Version: 1.0",
        "Content-Type: %s" % content_type,
    ]
    if cte:
        lines.append("Content-Transfer-Encoding: %s" % cte)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def subject_bytes(label, mid):
    """The raw 8-bit subject a message from this module carries."""
    return ("%s %s %s" % (SUBJECT_PREFIX, label, mid)).encode("utf-8")


def small_message(mid, sender, to, label):
    """A text/plain 8-bit Chinese message."""
    head = _headers(mid, sender, to, label, "text/plain; charset=utf-8", "8bit")
    return head + BODY_TEXT.encode("utf-8")


_BIG_BODY = None
_ATTACHMENT_SHA = None


def attachment_data():
    return random.Random(ATTACHMENT_SEED).randbytes(ATTACHMENT_SIZE)


def big_body():
    """multipart/mixed body: Chinese text part + 20 MiB base64 attachment."""
    global _BIG_BODY, _ATTACHMENT_SHA
    if _BIG_BODY is None:
        data = attachment_data()
        _ATTACHMENT_SHA = sha256(data)
        b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
        parts = [
            b"This is a multi-part message in MIME format.\r\n",
            b"--" + BOUNDARY.encode() + b"\r\n",
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Transfer-Encoding: 8bit\r\n\r\n",
            BODY_TEXT.encode("utf-8"),
            b"--" + BOUNDARY.encode() + b"\r\n",
            b"Content-Type: application/octet-stream\r\n",
            b'Content-Disposition: attachment; filename="interop-20MiB.bin"\r\n',
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            b64,
            b"--" + BOUNDARY.encode() + b"--\r\n",
        ]
        _BIG_BODY = b"".join(parts)
    return _BIG_BODY


def attachment_sha256():
    big_body()
    return _ATTACHMENT_SHA


def big_message(mid, sender, to, label):
    ctype = 'multipart/mixed; boundary="%s"' % BOUNDARY
    return _headers(mid, sender, to, label, ctype, None) + big_body()


def decoded_text(raw):
    """The first text/plain part, decoded to str (for clients that re-encode)."""
    msg = email.message_from_bytes(normalize(raw), policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        return None
    return part.get_content()


def decoded_attachment_sha256(raw):
    """SHA-256 of the decoded application/octet-stream part, or None."""
    msg = email.message_from_bytes(normalize(raw), policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_content_type() == "application/octet-stream":
            return sha256(part.get_payload(decode=True) or b"")
    return None


def text_matches(raw):
    """True when the decoded text part equals BODY_TEXT (modulo CRLF/trailing space)."""
    text = decoded_text(raw)
    if text is None:
        return False
    want = [l.rstrip() for l in BODY_TEXT.replace("\r\n", "\n").strip("\n").split("\n")]
    got = [l.rstrip() for l in text.replace("\r\n", "\n").strip("\n").split("\n")]
    return want == got
