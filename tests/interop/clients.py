"""Drivers for the real mail clients the interop suite runs.

Each driver takes a `Target` (where to connect, which TLS mode, which login)
and either returns what it read or raises `Fail` with a one-line reason. A
missing program is a `Fail` naming the Debian package, never a skip. Every
external program's output is kept in the temp dir's logs/ for debugging, and
every run is bounded by a timeout.
"""

import imaplib
import os
import poplib
import pty
import select
import shutil
import smtplib
import ssl
import subprocess
import time
from dataclasses import dataclass


class Fail(Exception):
    """A check failed; the message is the one-line reason."""


# Program -> Debian package, for the "missing tool" message.
PACKAGES = {
    "swaks": "swaks libnet-ssleay-perl",
    "msmtp": "msmtp",
    "curl": "curl",
    "mbsync": "isync",
    "neomutt": "neomutt",
}


@dataclass
class Target:
    """One way of reaching the mail service: direct, or via the proxy."""

    label: str  # "direct", "proxy-plain", "proxy-starttls"
    host: str
    smtp: int
    imap: int
    pop3: int
    tls: str  # "implicit" | "starttls" | "plain"
    user: str
    password: str
    ca: str
    email: str  # the account address (envelope sender, recipient)
    workdir: str  # per-target scratch dir (client configs, fetched copies)
    logdir: str  # client output logs
    pin: str  # the exact certificate this target presents (for mbsync)

    def ctx(self):
        return ssl.create_default_context(cafile=self.ca)


def _need(program):
    if shutil.which(program) is None:
        pkg = PACKAGES.get(program, program)
        raise Fail(
            "missing tool %s: apt-get install %s (tests/interop/install-deps.sh)" % (program, pkg)
        )


def _tail(text, n=400):
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return " | ".join(text.strip().splitlines())[-n:]


def run(t, name, argv, stdin=None, timeout=120, env=None, ok_codes=(0,)):
    """Runs a client program; output goes to logs/<label>-<name>.log."""
    _need(argv[0])
    log = os.path.join(t.logdir, "%s-%s.log" % (t.label, name))
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run(
            argv,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            env=full_env,
        )
    except subprocess.TimeoutExpired:
        raise Fail("%s timed out after %ss" % (argv[0], timeout))
    with open(log, "ab") as f:
        f.write(b"$ " + " ".join(argv).encode() + b"\n" + p.stdout + b"\n--- stderr\n" + p.stderr)
    if p.returncode not in ok_codes:
        raise Fail("%s exited %d: %s" % (argv[0], p.returncode, _tail(p.stderr or p.stdout)))
    return p


def write_file(t, name, data, mode=0o600):
    os.makedirs(t.workdir, exist_ok=True)
    path = os.path.join(t.workdir, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    os.chmod(path, mode)
    return path


# --- SMTP senders ---------------------------------------------------------------


def swaks_send(t, msg, mail_from=None):
    # swaks always sends CRLF before the final dot, so the data it is given
    # must not end with one, or the body grows by an empty line.
    msgfile = write_file(t, "swaks.eml", msg[:-2] if msg.endswith(b"\r\n") else msg)
    argv = ["swaks", "--server", t.host, "--port", str(t.smtp), "--helo", "swaks.interop.test"]
    argv += ["--from", mail_from or t.email, "--to", t.email, "--data", "@" + msgfile]
    argv += ["--auth", "LOGIN", "--auth-user", t.user, "--auth-password", t.password]
    if t.tls == "implicit":
        argv += ["--tls-on-connect", "--tls-verify", "--tls-ca-path", t.ca]
    elif t.tls == "starttls":
        argv += ["--tls", "--tls-verify", "--tls-ca-path", t.ca]
    run(t, "swaks", argv)


def msmtp_send(t, msg):
    tls = {"implicit": ("on", "off"), "starttls": ("on", "on"), "plain": ("off", "off")}[t.tls]
    conf = "\n".join(
        [
            "account interop",
            "host %s" % t.host,
            "port %d" % t.smtp,
            "from %s" % t.email,
            "domain msmtp.interop.test",
            "auth plain",
            "user %s" % t.user,
            "password %s" % t.password,
            "tls %s" % tls[0],
            "tls_starttls %s" % tls[1],
            "tls_trust_file %s" % t.ca,
            "",
        ]
    )
    path = write_file(t, "msmtprc", conf)
    run(t, "msmtp", ["msmtp", "-C", path, "-a", "interop", t.email], stdin=msg)


def _curl_base(t, proto):
    port = {"smtp": t.smtp, "imap": t.imap, "pop3": t.pop3}[proto]
    scheme = proto + "s" if t.tls == "implicit" else proto
    argv = ["curl", "-sS", "--max-time", "120", "--cacert", t.ca]
    argv += ["--user", "%s:%s" % (t.user, t.password)]
    if t.tls == "starttls":
        argv.append("--ssl-reqd")
    return argv, "%s://%s:%d" % (scheme, t.host, port)


def curl_send(t, msgfile):
    argv, url = _curl_base(t, "smtp")
    argv += [url + "/curl.interop.test", "--mail-from", t.email, "--mail-rcpt", t.email]
    argv += ["--upload-file", msgfile]
    run(t, "curl-smtp", argv)


def _smtp_connect(t):
    if t.tls == "implicit":
        s = smtplib.SMTP_SSL(t.host, t.smtp, context=t.ctx(), timeout=60)
    else:
        s = smtplib.SMTP(t.host, t.smtp, timeout=60)
    s.ehlo("smtplib.interop.test")
    if t.tls == "starttls":
        s.starttls(context=t.ctx())
        s.ehlo("smtplib.interop.test")
    return s


def smtplib_send(t, msg, mail_from=None, login=True):
    """Sends with smtplib; returns the seconds the transaction took."""
    start = time.monotonic()
    s = _smtp_connect(t)
    try:
        if login:
            s.login(t.user, t.password)
        opts = ["BODY=8BITMIME"] if s.has_extn("8bitmime") else []
        refused = s.sendmail(mail_from or t.email, [t.email], msg, mail_options=opts)
        if refused:
            raise Fail("recipients refused: %r" % refused)
    except smtplib.SMTPException as e:
        raise Fail("smtplib: %s" % _tail(str(e)))
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass
    return time.monotonic() - start


def smtplib_mail_from(t, mail_from):
    """Logs in and sends only MAIL FROM; returns (code, reply)."""
    s = _smtp_connect(t)
    try:
        s.login(t.user, t.password)
        code, reply = s.mail(mail_from)
        s.rset()
        return code, reply
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


def neomutt_rc(t, extra=()):
    smtp_scheme = "smtps" if t.tls == "implicit" else "smtp"
    imap_scheme = "imaps" if t.tls == "implicit" else "imap"
    starttls = "yes" if t.tls == "starttls" else "no"
    force = "no" if t.tls == "plain" else "yes"
    lines = [
        'set charset = "utf-8"',
        'set send_charset = "utf-8"',
        "set allow_8bit = yes",
        'set from = "%s"' % t.email,
        'set real_name = ""',
        "set use_envelope_from = yes",
        'set hostname = "neomutt.interop.test"',
        'set record = ""',
        "set copy = no",
        "set user_agent = no",
        'set smtp_url = "%s://%s:%d/"' % (smtp_scheme, t.host, t.smtp),
        'set smtp_user = "%s"' % t.user,
        'set smtp_pass = "%s"' % t.password,
        'set imap_user = "%s"' % t.user,
        'set imap_pass = "%s"' % t.password,
        'set folder = "%s://%s:%d/"' % (imap_scheme, t.host, t.imap),
        'set spool_file = "+INBOX"',
        'set ssl_ca_certificates_file = "%s"' % t.ca,
        "set ssl_starttls = %s" % starttls,
        "set ssl_force_tls = %s" % force,
        "set ssl_verify_host = yes",
        'set header_cache = ""',
        'set message_cachedir = ""',
        "set wait_key = no",
        "set quit = yes",
        "set mark_old = no",
        "set move = no",
        "set sleep_time = 0",
        "set timeout = 5",
        "set pipe_decode = no",
        "set pipe_split = no",
    ]
    return write_file(t, "neomuttrc", "\n".join(list(lines) + list(extra)) + "\n")


NEOMUTT_ENV = {"LC_ALL": "C.UTF-8", "TERM": "xterm"}


def neomutt_send(t, subject, mid, body_text):
    rc = neomutt_rc(t)
    body = body_text.replace("\r\n", "\n").encode("utf-8")
    argv = ["neomutt", "-n", "-F", rc, "-s", subject, "-e", "my_hdr X-Interop-Id: %s" % mid]
    argv += ["--", t.email]
    run(t, "neomutt-send", argv, stdin=body, env=NEOMUTT_ENV, timeout=60)


def run_in_pty(t, name, argv, env, timeout=60):
    """Runs a curses program on a pseudo-terminal; returns its screen output."""
    _need(argv[0])
    master, slave = pty.openpty()
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.update({"LINES": "40", "COLUMNS": "160"})
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=full_env)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
            if time.monotonic() > deadline:
                p.kill()
                raise Fail("%s did not finish within %ss (waiting on a prompt?)" % (argv[0], timeout))
    finally:
        p.wait(timeout=10)
        os.close(master)
        log = os.path.join(t.logdir, "%s-%s.pty.log" % (t.label, name))
        with open(log, "wb") as f:
            f.write(bytes(out))
    return p.returncode, bytes(out)


def neomutt_list(t, mid):
    """Opens INBOX in neomutt, pipes the message whose subject has `mid` to a file."""
    out = os.path.join(t.workdir, "neomutt-piped.eml")
    if os.path.exists(out):
        os.unlink(out)
    push = 'push "<tag-pattern>~s %s<enter><tag-prefix><pipe-message>cat > %s<enter><quit>"' % (mid, out)
    rc = neomutt_rc(t, [push])
    argv = ["neomutt", "-n", "-F", rc, "-f", "+INBOX"]
    code, screen = run_in_pty(t, "neomutt-list", argv, NEOMUTT_ENV, timeout=30)
    if not os.path.exists(out) or os.path.getsize(out) == 0:
        raise Fail("neomutt (exit %s) piped nothing; screen tail: %s" % (code, _tail(screen, 200)))
    if mid.encode() not in screen:
        raise Fail("the index on screen does not list the message %s" % mid)
    with open(out, "rb") as f:
        return f.read()


# --- IMAP / POP3 readers ----------------------------------------------------------


def imap_connect(t, auth="login"):
    if t.tls == "implicit":
        m = imaplib.IMAP4_SSL(t.host, t.imap, ssl_context=t.ctx(), timeout=60)
    else:
        m = imaplib.IMAP4(t.host, t.imap, timeout=60)
        if t.tls == "starttls":
            m.starttls(ssl_context=t.ctx())
    if auth == "plain":
        blob = ("\0%s\0%s" % (t.user, t.password)).encode()
        m.authenticate("PLAIN", lambda _challenge: blob)
    else:
        m.login(t.user, t.password)
    return m


def imap_find(m, mid):
    """UID of the INBOX message with X-Interop-Id `mid`, or None."""
    typ, data = m.uid("SEARCH", "HEADER", "X-Interop-Id", mid)
    if typ != "OK" or not data or not data[0]:
        return None
    return data[0].split()[-1].decode()


def imap_fetch_uid(m, uid):
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    for item in data or []:
        if isinstance(item, tuple):
            return item[1]
    raise Fail("FETCH of UID %s returned no literal: %r" % (uid, (typ, data))[:300])


def imaplib_fetch(t, mid, auth="login"):
    m = imap_connect(t, auth)
    try:
        m.select("INBOX", readonly=True)
        uid = imap_find(m, mid)
        if uid is None:
            raise Fail("imaplib: no message with X-Interop-Id %s" % mid)
        return imap_fetch_uid(m, uid)
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def curl_imap_fetch(t, mid):
    argv, url = _curl_base(t, "imap")
    p = run(t, "curl-imap-search", argv + [url + "/INBOX", "-X", "UID SEARCH HEADER X-Interop-Id %s" % mid])
    uids = [w for line in p.stdout.splitlines() if line.startswith(b"* SEARCH") for w in line.split()[2:]]
    if not uids:
        raise Fail("curl imap: UID SEARCH found nothing: %s" % _tail(p.stdout))
    out = os.path.join(t.workdir, "curl-imap.eml")
    run(t, "curl-imap-fetch", argv + [url + "/INBOX;UID=%s" % uids[-1].decode(), "-o", out])
    with open(out, "rb") as f:
        return f.read()


def pop3_connect(t):
    if t.tls == "implicit":
        p = poplib.POP3_SSL(t.host, t.pop3, context=t.ctx(), timeout=60)
    else:
        p = poplib.POP3(t.host, t.pop3, timeout=60)
        if t.tls == "starttls":
            p.stls(context=t.ctx())
    p.user(t.user)
    p.pass_(t.password)
    return p


def poplib_fetch(t, mid):
    p = pop3_connect(t)
    try:
        count, _size = p.stat()
        for n in range(count, 0, -1):
            _resp, lines, _octets = p.top(n, 0)
            if any(mid.encode() in line for line in lines):
                _resp, lines, _octets = p.retr(n)
                return b"\r\n".join(lines) + b"\r\n"
        raise Fail("poplib: none of %d messages has X-Interop-Id %s" % (count, mid))
    finally:
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass


def curl_pop3_fetch(t, mid):
    argv, url = _curl_base(t, "pop3")
    listing = run(t, "curl-pop3-list", argv + [url + "/"]).stdout
    numbers = [int(l.split()[0]) for l in listing.splitlines() if l.split()[:1] and l.split()[0].isdigit()]
    for n in sorted(numbers, reverse=True):
        top = run(t, "curl-pop3-top", argv + [url + "/", "-X", "TOP %d 0" % n]).stdout
        if mid.encode() in top:
            out = os.path.join(t.workdir, "curl-pop3.eml")
            run(t, "curl-pop3-retr", argv + [url + "/%d" % n, "-o", out])
            with open(out, "rb") as f:
                return f.read()
    raise Fail("curl pop3: none of %d listed messages has X-Interop-Id %s" % (len(numbers), mid))


def mbsync_sync(t):
    """Pulls INBOX into a fresh local maildir; returns the list of message files."""
    ssltype = {"implicit": "IMAPS", "starttls": "STARTTLS", "plain": "None"}[t.tls]
    local = os.path.join(t.workdir, "mbsync-maildir")
    shutil.rmtree(local, ignore_errors=True)
    os.makedirs(local)
    conf = "\n".join(
        [
            "IMAPAccount interop",
            "Host %s" % t.host,
            "Port %d" % t.imap,
            "User %s" % t.user,
            'Pass "%s"' % t.password,
            "SSLType %s" % ssltype,
            "CertificateFile %s" % os.path.join(t.workdir, "mbsync-trust.pem"),
            # IMAP LOGIN named explicitly, so the command sent does not depend
            # on which Cyrus SASL plugins happen to be installed.
            "AuthMechs LOGIN",
            "",
            "IMAPStore remote",
            "Account interop",
            "",
            "MaildirStore local",
            "Path %s/" % local,
            "Inbox %s/INBOX" % local,
            "",
            "Channel interop",
            "Far :remote:",
            "Near :local:",
            "Patterns INBOX",
            "Sync Pull",
            "Create Near",
            "Expunge None",
            "SyncState *",
            "",
        ]
    )
    # isync 1.4 matches the host name only against DNS names in the
    # certificate, never IP SANs, so with Host 127.0.0.1 the CA alone fails
    # ("certificate owner does not match hostname"). A certificate listed in
    # CertificateFile is trusted as-is (mbsync's documented pinning), so the
    # file holds the test CA plus the exact certificate of this target.
    with open(t.ca, "rb") as f:
        bundle = f.read()
    with open(t.pin, "rb") as f:
        bundle += f.read()
    write_file(t, "mbsync-trust.pem", bundle, 0o644)
    rc = write_file(t, "mbsyncrc", conf)
    run(t, "mbsync", ["mbsync", "-c", rc, "interop"], timeout=180)
    files = []
    for sub in ("cur", "new"):
        d = os.path.join(local, "INBOX", sub)
        if os.path.isdir(d):
            files += [os.path.join(d, f) for f in sorted(os.listdir(d))]
    return files
