#!/usr/bin/env python3
"""A stand-in for smtp.qq.com:465 in the container test: an implicit-TLS SMTP server.

It accepts AUTH PLAIN / AUTH LOGIN only for --user with exactly --code (replying QQ's
535 otherwise), insists on MAIL FROM:<--user> as QQ does (501), and appends one JSON
object per accepted message to --record. It binds 127.0.0.1:0 and writes the port it got
to --port-file once it is listening, so the caller waits on that file instead of sleeping.

With --imap-port-file it also stands in for imap.qq.com:993 (implicit TLS, same
certificate and login): CAPABILITY, LOGIN, SELECT/EXAMINE, one message for FETCH, NOOP,
LOGOUT — enough for a client to log in through the proxy and read a message.
"""

import argparse
import asyncio
import base64
import json
import os
import ssl

MAX_LINE = 4096
MAX_MESSAGE = 1 << 20

LOGIN_FAIL = (
    b"535 Login Fail. Please enter your authorization code to login. More information in "
    b"http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=28&&no=1001256\r\n"
)


def b64(text):
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


class Session:
    def __init__(self, args, reader, writer):
        self.args = args
        self.reader = reader
        self.writer = writer
        self.user = None
        self.mail_from = None
        self.rcpt = []

    async def line(self):
        raw = await self.reader.readuntil(b"\n")
        if len(raw) > MAX_LINE:
            raise ValueError("line too long")
        return raw.rstrip(b"\r\n")

    async def reply(self, data):
        self.writer.write(data)
        await self.writer.drain()

    def check(self, user, code):
        ok = user == self.args.user.encode() and code == self.args.code.encode()
        return self.args.user if ok else None

    async def auth(self, words):
        mech = words[1].upper() if len(words) > 1 else b""
        if mech == b"PLAIN":
            blob = words[2] if len(words) > 2 else None
            if blob is None:
                await self.reply(b"334 \r\n")
                blob = await self.line()
            parts = (b64(blob) or b"").split(b"\0")
            self.user = self.check(parts[1], parts[2]) if len(parts) == 3 else None
        elif mech == b"LOGIN":
            await self.reply(b"334 VXNlcm5hbWU6\r\n")
            user = b64(await self.line()) or b""
            await self.reply(b"334 UGFzc3dvcmQ6\r\n")
            code = b64(await self.line()) or b""
            self.user = self.check(user, code)
        else:
            await self.reply(b"504 Unrecognized authentication type\r\n")
            return
        await self.reply(b"235 Authentication successful\r\n" if self.user else LOGIN_FAIL)

    async def data(self):
        await self.reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        body = bytearray()
        while True:
            raw = await self.reader.readuntil(b"\n")
            if raw in (b".\r\n", b".\n"):
                break
            body += raw[1:] if raw.startswith(b".") else raw
            if len(body) > MAX_MESSAGE:
                raise ValueError("message too large")
        record = {
            "auth_user": self.user,
            "mail_from": self.mail_from,
            "rcpt": self.rcpt,
            "data": body.decode("utf-8", "replace"),
        }
        with open(self.args.record, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.mail_from, self.rcpt = None, []
        await self.reply(b"250 OK: queued as fake\r\n")

    async def run(self):
        await self.reply(b"220 newxmesmtplogicsvrsza.qq.com XMail Esmtp QQ Mail Server.\r\n")
        while True:
            line = await self.line()
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb in (b"EHLO", b"HELO"):
                await self.reply(
                    b"250-newxmesmtplogicsvrsza.qq.com\r\n250-PIPELINING\r\n"
                    b"250-SIZE 73400320\r\n250-AUTH LOGIN PLAIN\r\n250-AUTH=LOGIN\r\n"
                    b"250 8BITMIME\r\n"
                )
            elif verb == b"AUTH":
                await self.auth(words)
            elif verb == b"MAIL":
                sender = line[line.find(b":") + 1 :].split(b">")[0].lstrip(b" <").decode()
                if self.user is None:
                    await self.reply(b"503 Error: need EHLO and AUTH first !\r\n")
                elif sender != self.user:
                    await self.reply(b"501 Mail from address must be same as authorization user.\r\n")
                else:
                    self.mail_from = sender
                    await self.reply(b"250 OK\r\n")
            elif verb == b"RCPT":
                if self.mail_from is None:
                    await self.reply(b"503 Error: need MAIL command\r\n")
                else:
                    self.rcpt.append(line[line.find(b":") + 1 :].strip(b" <>").decode())
                    await self.reply(b"250 OK\r\n")
            elif verb == b"DATA":
                if not self.rcpt:
                    await self.reply(b"503 Error: need RCPT command\r\n")
                else:
                    await self.data()
            elif verb == b"RSET":
                self.mail_from, self.rcpt = None, []
                await self.reply(b"250 OK\r\n")
            elif verb == b"NOOP":
                await self.reply(b"250 OK\r\n")
            elif verb == b"QUIT":
                await self.reply(b"221 Bye.\r\n")
                return
            else:
                await self.reply(b"502 Error: command not implemented\r\n")


# The one message in the fake INBOX, fetched whole by BODY[] / RFC822.
IMAP_MESSAGE = (
    b"From: friend@example.com\r\nTo: 12345@qq.com\r\nSubject: fake inbox\r\n\r\n"
    b"imap-token-inbox\r\n"
)


def imap_atoms(line):
    """The words of an IMAP command line, with "quoted" strings unquoted (RFC 3501 4.3)."""
    words, i = [], 0
    while i < len(line):
        if line[i : i + 1] == b" ":
            i += 1
        elif line[i : i + 1] == b'"':
            j, word = i + 1, bytearray()
            while j < len(line) and line[j : j + 1] != b'"':
                if line[j : j + 1] == b"\\":
                    j += 1
                word += line[j : j + 1]
                j += 1
            words.append(bytes(word))
            i = j + 1
        else:
            j = line.find(b" ", i)
            j = len(line) if j < 0 else j
            words.append(line[i:j])
            i = j
    return words


async def imap_session(args, reader, writer):
    async def reply(data):
        writer.write(data)
        await writer.drain()

    await reply(b"* OK [CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=LOGIN] QQMail XMIMAP4Server ready\r\n")
    user = None
    while True:
        raw = await reader.readuntil(b"\n")
        if len(raw) > MAX_LINE:
            raise ValueError("line too long")
        words = imap_atoms(raw.rstrip(b"\r\n"))
        if len(words) < 2:
            await reply(b"* BAD empty command\r\n")
            continue
        tag, verb = words[0], words[1].upper()
        if verb == b"CAPABILITY":
            await reply(b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=LOGIN\r\n" + tag + b" OK done\r\n")
        elif verb == b"LOGIN" and len(words) == 4:
            if words[2] == args.user.encode() and words[3] == args.code.encode():
                user = args.user
                await reply(tag + b" OK [CAPABILITY IMAP4 IMAP4rev1 IDLE UIDPLUS] Success login ok\r\n")
            else:
                await reply(tag + b" NO LOGIN Login error password error\r\n")
        elif user is None:
            await reply(tag + b" BAD need LOGIN first\r\n")
        elif verb in (b"SELECT", b"EXAMINE"):
            await reply(b"* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n"
                        + tag + b" OK [READ-WRITE] SELECT complete\r\n")
        elif verb == b"FETCH":
            await reply(b"* 1 FETCH (BODY[] {%d}\r\n" % len(IMAP_MESSAGE) + IMAP_MESSAGE
                        + b")\r\n" + tag + b" OK FETCH Completed\r\n")
        elif verb == b"NOOP":
            await reply(tag + b" OK NOOP Completed\r\n")
        elif verb == b"LOGOUT":
            await reply(b"* BYE LOGOUT received\r\n" + tag + b" OK LOGOUT Completed\r\n")
            return
        else:
            await reply(tag + b" BAD command not supported\r\n")


def write_port(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--imap-port-file", help="also serve IMAP; its port goes here")
    args = p.parse_args()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(args.cert, args.key)

    async def handle(reader, writer):
        try:
            await Session(args, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    async def handle_imap(reader, writer):
        try:
            await imap_session(args, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls, limit=MAX_LINE * 2)
    if args.imap_port_file:
        imap = await asyncio.start_server(handle_imap, "127.0.0.1", 0, ssl=tls, limit=MAX_LINE * 2)
        write_port(args.imap_port_file, imap.sockets[0].getsockname()[1])
    # Written last: once it exists, every listener is up.
    write_port(args.port_file, server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
