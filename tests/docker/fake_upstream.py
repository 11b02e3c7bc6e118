#!/usr/bin/env python3
"""A stand-in for smtp.qq.com:465 in the container test: an implicit-TLS SMTP server.

It accepts AUTH PLAIN / AUTH LOGIN only for --user with exactly --code (replying QQ's
535 otherwise), insists on MAIL FROM:<--user> as QQ does (501), and appends one JSON
object per accepted message to --record. It binds 127.0.0.1:0 and writes the port it got
to --port-file once it is listening, so the caller waits on that file instead of sleeping.
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


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--code", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--port-file", required=True)
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls, limit=MAX_LINE * 2)
    port = server.sockets[0].getsockname()[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
