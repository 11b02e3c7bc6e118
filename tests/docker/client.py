#!/usr/bin/env python3
"""Client-side helpers for tests/docker/run.sh; each subcommand exits 0 on success and
says why on stderr otherwise.

  free-ports N                         print N free 127.0.0.1 TCP ports
  wait-greeting PORT PREFIX SECONDS    poll until 127.0.0.1:PORT greets with PREFIX
  send PORT USER PASSWORD FROM TO TOKEN [--starttls CAFILE]
                                       AUTH and send one message through the proxy
  auth-fails PORT USER PASSWORD        AUTH must be refused with 535
  check-record FILE N USER TO TOKEN    the fake upstream's Nth message (1-based) was sent
                                       by USER (i.e. with the right code), MAIL FROM USER,
                                       to TO, and carries TOKEN
  count-records FILE N                 the fake upstream got exactly N messages
  image-config JSON                    the image's config is the one the Dockerfile promises
  login-from-log LOGFILE               print "user password" from a k8s-file container log:
                                       the banner must be on stdout, the password never on
                                       stderr
  login-from-output FILE               print "user password" from a file holding the
                                       proxy's stdout (tests/packaging)
  imap-fetch PORT USER PASSWORD TOKEN  LOGIN through the proxy's plain IMAP port, SELECT
                                       INBOX, FETCH 1 BODY[]: the message carries TOKEN
"""

import imaplib
import json
import smtplib
import socket
import ssl
import sys
import time


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def free_ports(n):
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def wait_greeting(port, prefix, seconds):
    deadline = time.monotonic() + float(seconds)
    last = "nothing"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), timeout=2) as s:
                s.settimeout(2)
                greeting = s.recv(512)
                if greeting.startswith(prefix.encode()):
                    print(greeting.decode("utf-8", "replace").strip())
                    return
                last = repr(greeting)
        except OSError as e:
            last = str(e)
        # Polling interval, not a readiness assumption: the loop ends on the greeting.
        time.sleep(0.1)
    die(f"127.0.0.1:{port} did not greet with {prefix!r} within {seconds}s (last: {last})")


def send(port, user, password, sender, to, token, *rest):
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("docker-test")
        if rest[:1] == ("--starttls",):
            ctx = ssl.create_default_context(cafile=rest[1])
            ctx.check_hostname = False  # the generated cert names localhost; we dial an IP
            s.starttls(context=ctx)
            s.ehlo("docker-test")
        s.login(user, password)
        msg = (
            f"From: Docker Test <{sender}>\r\nTo: <{to}>\r\nSubject: container test {token}\r\n"
            f"Message-ID: <{token}@docker-test>\r\n\r\nbody {token}\r\n"
        )
        refused = s.sendmail(sender, [to], msg.encode())
        if refused:
            die(f"recipients refused: {refused}")


def auth_fails(port, user, password):
    with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
        s.ehlo("docker-test")
        try:
            s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            if e.smtp_code == 535:
                return
            die(f"AUTH refused with {e.smtp_code}, expected 535")
        die("AUTH with a wrong password was accepted")


def records(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def check_record(path, n, user, to, token):
    recs = records(path)
    if len(recs) < int(n):
        die(f"the fake upstream has {len(recs)} message(s), expected at least {n}")
    r = recs[int(n) - 1]
    problems = []
    if r["auth_user"] != user:
        problems.append(f"logged in as {r['auth_user']!r}, expected {user!r}")
    if r["mail_from"] != user:
        problems.append(f"MAIL FROM {r['mail_from']!r}, expected the account {user!r}")
    if r["rcpt"] != [to]:
        problems.append(f"RCPT {r['rcpt']!r}, expected [{to!r}]")
    if token not in r["data"]:
        problems.append(f"token {token!r} not in the message")
    if problems:
        die("; ".join(problems))


def count_records(path, n):
    got = len(records(path))
    if got != int(n):
        die(f"the fake upstream has {got} message(s), expected {n}")


def image_config(text):
    data = json.loads(text)
    if isinstance(data, list):  # `podman image inspect` gives a list of one
        data = data[0]
    cfg = data["Config"]
    # podman puts it beside Config ("Healthcheck"), docker inside it.
    health = data.get("Healthcheck") or data.get("HealthCheck") or cfg.get("Healthcheck")
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    # The image's listeners and state dir are defaults (QQMAIL_DEFAULTS=container), not
    # QQMAIL_*_LISTEN variables, which would override a mounted config file.
    want_env = {
        "QQMAIL_DEFAULTS": "container",
        "QQMAIL_SMTP_LISTEN": None,
        "QQMAIL_IMAP_LISTEN": None,
        "QQMAIL_POP3_LISTEN": None,
        "QQMAIL_STATE_DIR": None,
    }
    checks = [
        ("User", cfg.get("User"), "65532:65532"),
        ("Entrypoint", cfg.get("Entrypoint"), ["/qqmail-proxy"]),
        ("Cmd", cfg.get("Cmd"), ["serve"]),
        ("Volumes", sorted(cfg.get("Volumes") or {}), ["/var/lib/qqmail-proxy"]),
        ("ExposedPorts", sorted(cfg.get("ExposedPorts") or {}), ["1110/tcp", "1143/tcp", "2525/tcp"]),
        ("Env", {k: env.get(k) for k in want_env}, want_env),
        ("Healthcheck", (health or {}).get("Test"), ["CMD", "/qqmail-proxy", "healthcheck"]),
    ]
    bad = [f"{name}: {got!r}, expected {want!r}" for name, got, want in checks if got != want]
    if bad:
        die("; ".join(bad))


def login_from_log(path):
    user = password = None
    stderr_text = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            # k8s-file format: TIMESTAMP STREAM P|F TEXT
            parts = line.rstrip("\n").split(" ", 3)
            if len(parts) < 4:
                continue
            stream, text = parts[1], parts[3]
            if stream == "stderr":
                stderr_text.append(text)
                continue
            field = text.strip()
            if field.startswith("user:"):
                user = field.split(":", 1)[1].strip()
            elif field.startswith("password:"):
                password = field.split(":", 1)[1].strip()
    if not user or not password:
        die("no generated login banner on the container's stdout")
    if any(password in t for t in stderr_text):
        die("the generated password also appears on stderr (the log)")
    print(user, password)


def login_from_output(path):
    fields = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.strip().partition(":")
            if key in ("user", "password") and value.strip():
                fields[key] = value.strip()
    if "user" not in fields or "password" not in fields:
        die(f"no generated login banner in {path}")
    print(fields["user"], fields["password"])


def imap_fetch(port, user, password, token):
    with imaplib.IMAP4("127.0.0.1", int(port), timeout=20) as m:
        m.login(user, password)
        typ, data = m.select("INBOX")
        if typ != "OK":
            die(f"SELECT INBOX: {typ} {data}")
        typ, data = m.fetch("1", "(BODY[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            die(f"FETCH 1: {typ} {data}")
        if token.encode() not in data[0][1]:
            die(f"FETCH 1: {token!r} not in {data[0][1]!r}")
        m.logout()


COMMANDS = {
    "free-ports": free_ports,
    "wait-greeting": wait_greeting,
    "send": send,
    "auth-fails": auth_fails,
    "check-record": check_record,
    "count-records": count_records,
    "image-config": image_config,
    "login-from-log": login_from_log,
    "login-from-output": login_from_output,
    "imap-fetch": imap_fetch,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die(__doc__)
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except (OSError, smtplib.SMTPException, imaplib.IMAP4.error, ssl.SSLError, KeyError, ValueError) as e:
        die(f"{sys.argv[1]}: {type(e).__name__}: {e}")
