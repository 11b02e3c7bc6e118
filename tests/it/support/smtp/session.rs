//! The fake SMTP server's command loop: one [`Session`] per connection (and a fresh one
//! after STARTTLS, RFC 3207 §4.2), speaking QQ's replies.

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

type Io<S> = BufReader<S>;
type IoResult<T> = std::io::Result<T>;

impl<'a> Session<'a> {
    pub(super) fn new(shared: &'a Shared, tls: bool) -> Session<'a> {
        Session {
            shared,
            kick_seen: AtomicU64::new(*shared.kick.borrow()),
            tls,
            helo: false,
            auth: None,
            txn: Txn::Idle,
        }
    }

    fn opts(&self) -> &SmtpOptions {
        &self.shared.opts
    }

    async fn reply<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
        text: &[u8],
    ) -> IoResult<()> {
        if let Fault::SlowReply(delay) = self.opts().fault {
            tokio::time::sleep(delay).await;
        }
        // One write, so one TLS record and one segment: a reply split in two could lose its
        // CRLF to Nagle's delay when a close right after it resets the connection.
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text);
        line.extend_from_slice(b"\r\n");
        io.write_all(&line).await?;
        io.flush().await
    }

    /// Sends the 220 greeting (a 421 and an error while [`Flap::Refusing`]), or under
    /// [`Fault::NoGreeting`] swallows input until EOF.
    pub(super) async fn greet<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> IoResult<()> {
        if self.shared.lock().flap == Flap::Refusing {
            self.reply(io, flap::REFUSED_421.as_bytes()).await?;
            self.shared.record(|r| r.flap_refused += 1);
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        match self.opts().fault {
            Fault::NoGreeting => {
                let mut sink = [0u8; 1024];
                while io.read(&mut sink).await? > 0 {}
                Err(std::io::ErrorKind::UnexpectedEof.into())
            }
            Fault::GbkGreeting => {
                let mut text = b"220 smtp.qq.com Esmtp QQ Mail Server ".to_vec();
                text.extend_from_slice(GBK_WELCOME);
                self.reply(io, &text).await
            }
            _ => {
                self.reply(io, b"220 smtp.qq.com Esmtp QQ Mail Server")
                    .await
            }
        }
    }

    /// Reads one command-level line; `None` on EOF, after answering an over-long one, or
    /// after closing on a [`FakeSmtp::close_idle`].
    async fn command_line<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> IoResult<Option<String>> {
        if self.kicked_while_idle(io).await? {
            self.close_421(io).await?;
            return Ok(None);
        }
        match read_line(io, self.opts().max_line).await? {
            Line::Eof => Ok(None),
            Line::TooLong => {
                self.reply(io, b"500 5.5.0 Line too long").await?;
                Ok(None)
            }
            Line::Full(bytes) => {
                let text = String::from_utf8_lossy(trim_eol(&bytes)).into_owned();
                self.shared.record(|r| r.commands.push(text.clone()));
                Ok(Some(text))
            }
        }
    }

    /// Waits for the first byte of the next line; true if [`FakeSmtp::close_idle`] came
    /// first (or came while this session was busy and nothing is waiting to be read).
    async fn kicked_while_idle<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> IoResult<bool> {
        let mut kick = self.shared.kick.subscribe();
        let generation = *kick.borrow_and_update();
        if generation != self.kick_seen.load(Ordering::Relaxed) && io.buffer().is_empty() {
            return Ok(true);
        }
        tokio::select! {
            biased;
            // fill_buf keeps what it read in the BufReader, so losing the race loses nothing.
            filled = io.fill_buf() => {
                filled?;
                // A kick that finds a command arriving is not for this (busy) session.
                self.kick_seen.store(*kick.borrow(), Ordering::Relaxed);
                Ok(false)
            }
            _ = kick.changed() => Ok(true),
        }
    }

    /// Says [`CLOSING_421`]; the caller then closes the connection.
    async fn close_421<S: AsyncWrite + AsyncRead + Unpin>(&self, io: &mut Io<S>) -> IoResult<()> {
        self.reply(io, CLOSING_421.as_bytes()).await?;
        self.shared.record(|r| r.closes_421 += 1);
        Ok(())
    }

    /// Takes one [`FakeSmtp::close_next`] for `verb`, if one is pending.
    fn take_close_next(&self, verb: &str) -> bool {
        let mut rec = self.shared.lock();
        match &mut rec.close_next {
            Some((v, n)) if v == verb && *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// The command loop.
    pub(super) async fn run<S: AsyncWrite + AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
    ) -> IoResult<End> {
        loop {
            let Some(line) = self.command_line(io).await? else {
                return Ok(End::Closed);
            };
            if roll(&self.opts().fault) {
                return Ok(End::Drop);
            }
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            if self.take_close_next(&verb) {
                self.close_421(io).await?;
                return Ok(End::Closed);
            }
            match verb.as_str() {
                "EHLO" => {
                    self.helo = true;
                    self.txn = Txn::Idle;
                    self.reply(io, &self.ehlo_reply()).await?;
                }
                "HELO" => {
                    self.helo = true;
                    self.txn = Txn::Idle;
                    self.reply(io, b"250 smtp.qq.com").await?;
                }
                "STARTTLS" => {
                    if matches!(self.opts().tls, TlsMode::StartTls(_)) && !self.tls {
                        self.reply(io, b"220 2.0.0 Ready to start TLS").await?;
                        return Ok(End::StartTls);
                    }
                    self.reply(io, b"502 5.5.1 STARTTLS not available").await?;
                }
                "AUTH" => {
                    if let Some(end) = self.auth(io, &arg).await? {
                        return Ok(end);
                    }
                }
                "MAIL" => self.mail(io, &arg).await?,
                "RCPT" => self.rcpt(io, &arg).await?,
                "DATA" => {
                    if let Some(end) = self.data(io).await? {
                        return Ok(end);
                    }
                }
                "RSET" => {
                    self.txn = Txn::Idle;
                    self.reply(io, b"250 OK").await?;
                }
                "NOOP" => self.reply(io, b"250 OK").await?,
                "QUIT" => {
                    if self.opts().fault == Fault::ResetOnQuit {
                        return Ok(End::Drop);
                    }
                    self.reply(io, b"221 Bye.").await?;
                    return Ok(End::Closed);
                }
                _ => self.reply(io, b"500 Error: bad syntax").await?,
            }
        }
    }

    fn ehlo_reply(&self) -> Vec<u8> {
        let mut lines = vec![
            "250-smtp.qq.com".to_owned(),
            "250-PIPELINING".to_owned(),
            format!("250-SIZE {}", self.opts().size),
        ];
        if matches!(self.opts().tls, TlsMode::StartTls(_)) && !self.tls {
            lines.push("250-STARTTLS".to_owned());
        }
        lines.push("250-AUTH LOGIN PLAIN XOAUTH XOAUTH2".to_owned());
        lines.push("250-AUTH=LOGIN".to_owned());
        lines.push("250-MAILCOMPRESS".to_owned());
        lines.push("250 8BITMIME".to_owned());
        lines.join("\r\n").into_bytes()
    }

    /// A SASL continuation: sends `334 challenge` and returns the decoded answer, or `None`
    /// after answering a cancel (`*`, RFC 4954 §4), bad base64 or EOF.
    async fn sasl_step<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
        challenge: &str,
    ) -> IoResult<Option<Vec<u8>>> {
        self.reply(io, format!("334 {challenge}").as_bytes())
            .await?;
        let Some(answer) = self.command_line(io).await? else {
            return Ok(None);
        };
        self.decode_or_reply(io, &answer).await
    }

    async fn decode_or_reply<S: AsyncWrite + AsyncRead + Unpin>(
        &self,
        io: &mut Io<S>,
        b64: &str,
    ) -> IoResult<Option<Vec<u8>>> {
        if b64.trim() == "*" {
            self.reply(io, b"501 5.7.0 Authentication cancelled")
                .await?;
            return Ok(None);
        }
        match base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(_) => {
                self.reply(io, b"501 5.5.2 Cannot decode response").await?;
                Ok(None)
            }
        }
    }

    /// AUTH PLAIN / LOGIN, initial response inline or after 334 (RFC 4954 §4).
    async fn auth<S: AsyncWrite + AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
        arg: &str,
    ) -> IoResult<Option<End>> {
        if !self.helo {
            self.reply(io, b"503 Error: send HELO/EHLO first").await?;
            return Ok(None);
        }
        if self.auth.is_some() {
            self.reply(io, b"503 5.5.1 Already authenticated").await?;
            return Ok(None);
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim())),
            None => (arg.to_ascii_uppercase(), None),
        };
        let (user, password) = match mech.as_str() {
            "PLAIN" => {
                let blob = match initial {
                    Some(i) => self.decode_or_reply(io, i).await?,
                    None => self.sasl_step(io, "").await?,
                };
                let Some(blob) = blob else { return Ok(None) };
                // RFC 4616 §2: authzid NUL authcid NUL passwd.
                let parts: Vec<&[u8]> = blob.split(|&b| b == 0).collect();
                let [_authzid, user, pass] = parts.as_slice() else {
                    self.reply(io, b"501 5.5.2 Malformed PLAIN response")
                        .await?;
                    return Ok(None);
                };
                (lossy(user), lossy(pass))
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => self.decode_or_reply(io, i).await?,
                    None => self.sasl_step(io, "VXNlcm5hbWU6").await?,
                };
                let Some(user) = user else { return Ok(None) };
                let Some(pass) = self.sasl_step(io, "UGFzc3dvcmQ6").await? else {
                    return Ok(None);
                };
                (lossy(&user), lossy(&pass))
            }
            _ => {
                self.reply(io, b"504 5.5.4 Unrecognized authentication type")
                    .await?;
                return Ok(None);
            }
        };
        let opts = self.opts();
        let must_starttls = matches!(opts.tls, TlsMode::StartTls(_)) && !self.tls;
        let good = user.eq_ignore_ascii_case(&opts.user) && password == opts.code;
        let accepted = good
            && !must_starttls
            && !matches!(
                opts.fault,
                Fault::RejectAuth
                    | Fault::RejectAuthGbk
                    | Fault::TempFailAuth
                    | Fault::RateLimitAuth
            );
        let attempt = AuthAttempt {
            mechanism: mech,
            user: user.clone(),
            password: password.clone(),
            tls: self.tls,
            accepted,
        };
        self.shared.record(|r| r.auth.push(attempt));
        if must_starttls {
            self.reply(io, b"530 5.7.0 Must issue a STARTTLS command first")
                .await?;
            return Ok(None);
        }
        match opts.fault {
            Fault::RejectAuthGbk => {
                let mut text = b"535 ".to_vec();
                text.extend_from_slice(GBK_LOGIN_FAILED);
                self.reply(io, &text).await?;
            }
            Fault::TempFailAuth => self.reply(io, TEMP_FAIL_454.as_bytes()).await?,
            Fault::RateLimitAuth => {
                self.reply(io, RATE_LIMIT_421.as_bytes()).await?;
                return Ok(Some(End::Closed));
            }
            _ if accepted => {
                self.auth = Some((user, password));
                self.reply(io, b"235 Authentication successful").await?;
            }
            _ => self.reply(io, QQ_535.as_bytes()).await?,
        }
        Ok(None)
    }

    async fn mail<S: AsyncWrite + AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
        arg: &str,
    ) -> IoResult<()> {
        let Some((user, _)) = &self.auth else {
            return self.reply(io, QQ_503_NO_AUTH.as_bytes()).await;
        };
        if !matches!(self.txn, Txn::Idle) {
            return self.reply(io, b"503 Error: nested MAIL command").await;
        }
        let scripted = self
            .shared
            .opts
            .mail_script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front());
        if let Some(reply) = scripted {
            return self.reply(io, reply.as_bytes()).await;
        }
        let Some((from, params)) = path_arg(arg, "FROM:") else {
            return self.reply(io, b"501 Syntax error in parameters").await;
        };
        if self.opts().sender_rule && !from.eq_ignore_ascii_case(user) {
            return self.reply(io, QQ_501_SENDER.as_bytes()).await;
        }
        let declared = params.split_whitespace().find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.eq_ignore_ascii_case("SIZE")
                .then(|| v.parse::<u64>().ok())?
        });
        if declared.is_some_and(|n| n > self.opts().size) {
            return self
                .reply(io, b"552 5.3.4 Message size exceeds fixed limit")
                .await;
        }
        self.txn = Txn::Mail {
            from,
            rcpt: Vec::new(),
        };
        self.reply(io, b"250 OK").await
    }

    async fn rcpt<S: AsyncWrite + AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
        arg: &str,
    ) -> IoResult<()> {
        let Txn::Mail { rcpt, .. } = &mut self.txn else {
            return self.reply(io, b"503 Error: need MAIL command").await;
        };
        match path_arg(arg, "TO:") {
            Some((to, _)) if !to.is_empty() => {
                let scripted = self
                    .shared
                    .opts
                    .rcpt_script
                    .lock()
                    .ok()
                    .and_then(|mut s| s.get_mut(&to.to_ascii_lowercase())?.pop_front());
                if let Some(reply) = scripted {
                    return self.reply(io, reply.as_bytes()).await;
                }
                rcpt.push(to);
                self.reply(io, b"250 OK").await
            }
            _ => self.reply(io, b"501 Bad address syntax").await,
        }
    }

    /// DATA: streams lines into the one buffer that becomes the recorded message.
    async fn data<S: AsyncWrite + AsyncRead + Unpin>(
        &mut self,
        io: &mut Io<S>,
    ) -> IoResult<Option<End>> {
        let (from, rcpt) = match std::mem::replace(&mut self.txn, Txn::Idle) {
            Txn::Mail { from, rcpt } if !rcpt.is_empty() => (from, rcpt),
            other => {
                self.txn = other;
                self.reply(io, b"503 Error: need RCPT command").await?;
                return Ok(None);
            }
        };
        self.reply(io, b"354 End data with <CR><LF>.<CR><LF>.")
            .await?;
        let limit = usize::try_from(self.opts().size).unwrap_or(usize::MAX);
        let mut seen = DataSeen {
            shared: self.shared,
            data: Vec::new(),
            complete: false,
        };
        let mut oversize = false;
        loop {
            let line = match read_line(io, self.opts().max_line).await? {
                Line::Eof => return Ok(Some(End::Closed)),
                Line::TooLong => {
                    self.reply(io, b"500 5.5.0 Line too long").await?;
                    return Ok(Some(End::Closed));
                }
                Line::Full(line) => line,
            };
            // RFC 5321 §4.1.1.4: the data ends with CRLF.CRLF; the first CRLF belongs
            // to the terminator, so it is not part of the recorded bytes.
            if line == b".\r\n" {
                if seen.data.ends_with(b"\r\n") {
                    seen.data.truncate(seen.data.len() - 2);
                }
                break;
            }
            if seen.data.len() + line.len() > limit {
                // Keep reading to the terminator, but hold no more than SIZE bytes.
                oversize = true;
            } else {
                seen.data.extend_from_slice(&line);
            }
            match &self.opts().fault {
                Fault::DropMidData { after_bytes } if seen.data.len() >= *after_bytes => {
                    return Ok(Some(End::Drop));
                }
                Fault::RefuseMidData {
                    after_bytes,
                    code,
                    text,
                    then,
                } if seen.data.len() >= *after_bytes => {
                    self.reply(io, format!("{code} {text}").as_bytes()).await?;
                    match then {
                        // Held open, never read: the peer's writes fill the buffers and block.
                        AfterRefusal::Stall => std::future::pending::<()>().await,
                        // Back to the command loop, which answers every line of the rest.
                        AfterRefusal::ReadOn => return Ok(None),
                        AfterRefusal::Close => {}
                    }
                    return Ok(Some(End::Closed));
                }
                _ => {}
            }
        }
        let data = seen.finish();
        if self.shared.lock().flap == Flap::Deferring {
            self.reply(io, flap::DEFERRED_451.as_bytes()).await?;
            self.shared.record(|r| r.flap_deferred += 1);
            return Ok(None);
        }
        match &self.opts().fault {
            Fault::DropAfterDataBeforeReply => return Ok(Some(End::Drop)),
            Fault::RandomDrop { .. } if roll(&self.opts().fault) => return Ok(Some(End::Drop)),
            Fault::RejectData(code, text) => {
                self.reply(io, format!("{code} {text}").as_bytes()).await?;
                return Ok(None);
            }
            _ => {}
        }
        if oversize {
            self.reply(io, b"552 5.3.4 Message size exceeds fixed limit")
                .await?;
            return Ok(None);
        }
        let (auth_user, auth_password) = self.auth.clone().unwrap_or_default();
        let message = Message {
            mail_from: from,
            rcpt_to: rcpt,
            data,
            auth_user,
            auth_password,
        };
        self.shared.record(|r| r.messages.push(message));
        self.reply(io, b"250 OK: queued as.").await?;
        Ok(None)
    }
}

/// The bytes of one DATA as they arrive; recorded as cut off if the DATA ends any way but
/// with its terminator (the peer closed or failed mid-message, or a fault ended it).
struct DataSeen<'a> {
    shared: &'a Shared,
    data: Vec<u8>,
    complete: bool,
}

impl DataSeen<'_> {
    /// The terminator arrived: the bytes are the message's, not a cut-off DATA's.
    fn finish(mut self) -> Vec<u8> {
        self.complete = true;
        std::mem::take(&mut self.data)
    }
}

impl Drop for DataSeen<'_> {
    fn drop(&mut self) {
        if !self.complete {
            let data = std::mem::take(&mut self.data);
            self.shared.record(|r| r.cut_off.push(data));
        }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses `FROM:<addr> params` / `TO:<addr> params` (RFC 5321 §4.1.2), tolerating a
/// space after the colon. Returns the address between the brackets and the rest.
fn path_arg(arg: &str, keyword: &str) -> Option<(String, String)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg.get(keyword.len()..)?.trim_start();
    let rest = rest.strip_prefix('<')?;
    let (addr, params) = rest.split_once('>')?;
    Some((addr.to_owned(), params.trim().to_owned()))
}
