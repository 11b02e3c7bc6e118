//! One FakeImap connection: the session state machine (RFC 3501 §3) and its command
//! handlers, answering with QQ's texts.

use std::io;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use tokio::net::TcpStream;

use super::cmd::{self, Item, Tok};
use super::{Message, Shared};
use crate::support::upstream::{
    lock, Conn, Fault, LoginAttempt, LoginMethod, TlsMode, GBK_READY, QQ_LOGIN_FAIL,
};

/// Longest command line accepted (literals excluded).
const MAX_LINE: usize = 64 * 1024;
/// Longest whole command, literals included (only LOGIN/ID carry literals here).
const MAX_COMMAND: usize = 256 * 1024;
/// Commands that need a logged-in session; before login they get `NO`.
const AFTER_LOGIN: &[&[u8]] = &[
    b"SELECT",
    b"EXAMINE",
    b"LIST",
    b"LSUB",
    b"XLIST",
    b"NAMESPACE",
    b"ENABLE",
    b"IDLE",
    b"FETCH",
    b"SEARCH",
    b"UID",
    b"CLOSE",
    b"CHECK",
];
/// Commands that need a selected mailbox; without one they get `BAD`.
const IN_SELECTED: &[&[u8]] = &[b"FETCH", b"SEARCH", b"UID", b"CLOSE", b"CHECK"];
const ALL_FLAGS: &str = r"\Answered \Flagged \Deleted \Draft \Seen";

/// Where the session is (RFC 3501 §3).
enum State {
    NotAuthenticated,
    Authenticated,
    Selected {
        /// Position in the store (mailboxes are never removed, so it is stable).
        index: usize,
        /// EXISTS count the client has been told.
        known: usize,
    },
}

/// What to do after a command.
enum Flow {
    Continue,
    /// Close politely (LOGOUT, EOF).
    Close,
    /// Reset the connection (a fault).
    Reset,
}

struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    state: State,
    /// Whether this session has sent `ID` (NetEase requires it before SELECT).
    id_sent: bool,
}

/// Serves one connection until it ends.
pub(super) async fn run(shared: Arc<Shared>, tcp: TcpStream) {
    let Some(conn) = Conn::open(tcp, &shared.opts.tls, &shared.rec).await else {
        return;
    };
    let mut s = Session {
        shared,
        conn,
        state: State::NotAuthenticated,
        id_sent: false,
    };
    match s.serve().await {
        Ok(Flow::Reset) => s.conn.reset().await,
        Ok(_) => s.conn.close().await,
        Err(_) => {}
    }
}

fn tagged(tag: &[u8], text: &str) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

impl Session {
    fn fault(&self) -> &Fault {
        &self.shared.opts.fault
    }

    fn record(&self, line: &[u8]) {
        self.shared.rec.update(|l| l.commands.push(line.to_vec()));
    }

    /// Capabilities before login: QQ's, plus STARTTLS while an upgrade is on offer.
    fn pre_login_caps(&self) -> String {
        let starttls = matches!(self.shared.opts.tls, TlsMode::StartTls(_)) && !self.conn.is_tls();
        let extra = if starttls { " STARTTLS" } else { "" };
        format!("IMAP4 IMAP4rev1 ID{extra} AUTH=PLAIN AUTH=LOGIN AUTH=XOAUTH2 NAMESPACE")
    }

    async fn serve(&mut self) -> io::Result<Flow> {
        if let Fault::NoGreeting = self.fault() {
            self.conn.silence().await;
            return Ok(Flow::Close);
        }
        self.fault().delay().await;
        let mut greeting = format!(
            "* OK [CAPABILITY {}] QQMail XMIMAP4Server ",
            self.pre_login_caps()
        )
        .into_bytes();
        match self.fault() {
            Fault::GbkGreeting => greeting.extend_from_slice(GBK_READY),
            _ => greeting.extend_from_slice(b"ready"),
        }
        greeting.extend_from_slice(b"\r\n");
        self.conn.send(&greeting).await?;
        loop {
            let Some(raw) = self.read_command().await? else {
                return Ok(Flow::Close);
            };
            self.record(&raw);
            self.fault().delay().await;
            match self.command(&raw).await? {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    /// Reads one command, answering `+` to each synchronizing literal (RFC 3501 §7.5);
    /// literals stay inline as `{n}\r\n<bytes>`.
    async fn read_command(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut raw = Vec::new();
        loop {
            let Some(line) = self.conn.read_line(MAX_LINE).await? else {
                return Ok(None);
            };
            raw.extend_from_slice(&line);
            let Some((n, non_sync)) = cmd::literal_len(&line) else {
                return Ok(Some(raw));
            };
            if raw.len().saturating_add(n) > MAX_COMMAND {
                self.conn.send(b"* BAD Literal too large\r\n").await?;
                return Err(io::ErrorKind::InvalidData.into());
            }
            if !non_sync {
                self.conn
                    .send(b"+ Ready for additional command text\r\n")
                    .await?;
            }
            let Some(data) = self.conn.read_n(n).await? else {
                return Ok(None);
            };
            raw.extend_from_slice(b"\r\n");
            raw.extend_from_slice(&data);
        }
    }

    /// Reads one continuation line (AUTHENTICATE responses), recording it.
    async fn read_continuation(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self.conn.read_line(MAX_LINE).await?;
        if let Some(l) = &line {
            self.record(l);
        }
        Ok(line)
    }

    async fn command(&mut self, raw: &[u8]) -> io::Result<Flow> {
        let toks = match cmd::tokenize(raw) {
            Ok(t) => t,
            Err(why) => {
                self.conn
                    .send(format!("* BAD {why}\r\n").as_bytes())
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        let (tag, name, args) = match toks.as_slice() {
            [Tok::Atom(tag), name, args @ ..] => {
                (tag.clone(), name.keyword().unwrap_or_default(), args)
            }
            [Tok::Atom(tag)] => {
                self.conn.send(&tagged(tag, "BAD Missing command")).await?;
                return Ok(Flow::Continue);
            }
            _ => {
                self.conn.send(b"* BAD Missing tag\r\n").await?;
                return Ok(Flow::Continue);
            }
        };
        let authed = !matches!(self.state, State::NotAuthenticated);
        let selected = matches!(self.state, State::Selected { .. });
        let name = name.as_slice();
        let reply = match name {
            b"CAPABILITY" => {
                let caps = if authed {
                    self.shared.opts.post_login_caps.clone()
                } else {
                    self.pre_login_caps()
                };
                let mut out = format!("* CAPABILITY {caps}\r\n").into_bytes();
                out.extend(tagged(&tag, "OK CAPABILITY completed"));
                out
            }
            b"NOOP" => {
                let mut out = self.report_exists();
                out.extend(tagged(&tag, "OK NOOP completed"));
                out
            }
            b"LOGOUT" => {
                let mut out = b"* BYE LOGOUT received\r\n".to_vec();
                out.extend(tagged(&tag, "OK LOGOUT completed"));
                self.conn.send(&out).await?;
                return Ok(Flow::Close);
            }
            b"ID" => {
                let args = raw.splitn(3, |c| *c == b' ').nth(2).unwrap_or_default();
                lock(&self.shared.ids).push(args.to_vec());
                self.id_sent = true;
                let mut out = b"* ID (\"name\" \"QQMail\" \"vendor\" \"Tencent\")\r\n".to_vec();
                out.extend(tagged(&tag, "OK ID completed"));
                out
            }
            b"STARTTLS" | b"LOGIN" | b"AUTHENTICATE" if authed => {
                tagged(&tag, "BAD Already logged in")
            }
            b"STARTTLS" => match &self.shared.opts.tls {
                TlsMode::StartTls(cfg) if !self.conn.is_tls() => {
                    let cfg = cfg.clone();
                    self.conn
                        .send(&tagged(&tag, "OK Begin TLS negotiation now"))
                        .await?;
                    self.conn.starttls(&cfg, &self.shared.rec).await?;
                    return Ok(Flow::Continue);
                }
                _ => tagged(&tag, "BAD STARTTLS not available"),
            },
            b"LOGIN" => match args {
                [user, pass] => match (user.astring(), pass.astring()) {
                    (Some(u), Some(p)) => self.login(&tag, LoginMethod::ImapLogin, u, p),
                    _ => tagged(&tag, "BAD Invalid arguments"),
                },
                _ => tagged(&tag, "BAD Invalid arguments"),
            },
            b"AUTHENTICATE" => match self.authenticate(&tag, args).await? {
                Some(out) => out,
                None => return Ok(Flow::Close),
            },
            n if !authed && AFTER_LOGIN.contains(&n) => tagged(&tag, "NO Please login first"),
            b"SELECT" => self.select(&tag, args, false),
            b"EXAMINE" => self.select(&tag, args, true),
            b"LIST" | b"LSUB" | b"XLIST" => self.list(&tag, name, args),
            b"NAMESPACE" => {
                let mut out = b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n".to_vec();
                out.extend(tagged(&tag, "OK NAMESPACE completed"));
                out
            }
            b"ENABLE" => tagged(&tag, "OK ENABLE completed"),
            b"IDLE" => return self.idle(&tag).await,
            n if !selected && IN_SELECTED.contains(&n) => tagged(&tag, "BAD No mailbox selected"),
            b"CHECK" => tagged(&tag, "OK CHECK completed"),
            b"CLOSE" => {
                self.state = State::Authenticated;
                tagged(&tag, "OK CLOSE completed")
            }
            b"FETCH" => return self.fetch(&tag, args, false).await,
            b"SEARCH" => self.search(&tag, args, false),
            b"UID" => match args.split_first() {
                Some((sub, rest)) => match sub.keyword().as_deref() {
                    Some(b"FETCH") => return self.fetch(&tag, rest, true).await,
                    Some(b"SEARCH") => self.search(&tag, rest, true),
                    _ => tagged(&tag, "BAD Unsupported UID command"),
                },
                None => tagged(&tag, "BAD Missing UID command"),
            },
            _ => tagged(&tag, "BAD Unknown command"),
        };
        self.conn.send(&reply).await?;
        Ok(Flow::Continue)
    }

    /// Checks credentials, records the attempt, and returns the tagged answer.
    fn login(&mut self, tag: &[u8], method: LoginMethod, user: &[u8], pass: &[u8]) -> Vec<u8> {
        let opts = &self.shared.opts;
        let accepted = user == opts.user.as_bytes()
            && pass == opts.code.as_bytes()
            && !matches!(opts.fault, Fault::RejectLogin);
        let attempt = LoginAttempt {
            method,
            user: String::from_utf8_lossy(user).into_owned(),
            password: String::from_utf8_lossy(pass).into_owned(),
            over_tls: self.conn.is_tls(),
            accepted,
        };
        self.shared.rec.update(|l| {
            l.logins.push(attempt);
            l.login_at.push(std::time::Instant::now());
        });
        if accepted {
            self.state = State::Authenticated;
            let caps = &opts.post_login_caps;
            tagged(tag, &format!("OK [CAPABILITY {caps}] LOGIN completed"))
        } else {
            tagged(tag, &format!("NO {QQ_LOGIN_FAIL}"))
        }
    }

    /// AUTHENTICATE PLAIN (RFC 4616; initial response per RFC 4959 or after `+ `) and
    /// LOGIN. `None` if the client went away mid-exchange.
    async fn authenticate(&mut self, tag: &[u8], args: &[Tok]) -> io::Result<Option<Vec<u8>>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mech = args.first().and_then(Tok::keyword).unwrap_or_default();
        // RFC 4959 §3: an initial response may follow the mechanism; "=" means empty.
        let mut initial = args.get(1).and_then(Tok::astring).map(|ir| match ir {
            b"=" => Vec::new(),
            ir => ir.to_vec(),
        });
        let mut answers = Vec::new();
        let prompts: &[&[u8]] = match mech.as_slice() {
            b"PLAIN" => &[b"+ \r\n"],
            b"LOGIN" => &[b"+ VXNlcm5hbWU6\r\n", b"+ UGFzc3dvcmQ6\r\n"],
            _ => return Ok(Some(tagged(tag, "NO Unsupported authentication mechanism"))),
        };
        for prompt in prompts {
            let line = match initial.take() {
                Some(ir) => ir,
                None => {
                    self.conn.send(prompt).await?;
                    match self.read_continuation().await? {
                        Some(line) => line,
                        None => return Ok(None),
                    }
                }
            };
            // RFC 3501 §6.2.2: a lone "*" cancels the exchange.
            if line == b"*" {
                return Ok(Some(tagged(tag, "BAD AUTHENTICATE cancelled")));
            }
            match b64.decode(&line) {
                Ok(decoded) => answers.push(decoded),
                Err(_) => return Ok(Some(tagged(tag, "BAD Invalid base64"))),
            }
        }
        Ok(Some(match (mech.as_slice(), answers.as_slice()) {
            (b"PLAIN", [msg]) => {
                let mut parts = msg.split(|c| *c == 0);
                match (parts.next(), parts.next(), parts.next(), parts.next()) {
                    (Some(_authz), Some(user), Some(pass), None) => {
                        self.login(tag, LoginMethod::ImapAuthPlain, user, pass)
                    }
                    _ => tagged(tag, "BAD Invalid PLAIN message"),
                }
            }
            (b"LOGIN", [user, pass]) => self.login(tag, LoginMethod::ImapAuthLogin, user, pass),
            _ => tagged(tag, "BAD Invalid AUTHENTICATE exchange"),
        }))
    }

    fn select(&mut self, tag: &[u8], args: &[Tok], read_only: bool) -> Vec<u8> {
        // RFC 3501 §6.3.1: a SELECT attempt deselects first, even if it fails.
        self.state = State::Authenticated;
        if self.shared.opts.require_id_before_select && !self.id_sent {
            return tagged(
                tag,
                "NO SELECT Unsafe Login. Please contact kefu@188.com for help",
            );
        }
        let [name] = args else {
            return tagged(tag, "BAD Invalid arguments");
        };
        let Some(name) = name.astring() else {
            return tagged(tag, "BAD Invalid arguments");
        };
        let store = lock(&self.shared.store);
        let Some((index, mb)) = store.iter().enumerate().find(|(_, m)| m.is(name)) else {
            return tagged(tag, "NO Mailbox does not exist");
        };
        if !mb.selectable {
            return tagged(tag, "NO Mailbox is not selectable");
        }
        let n = mb.messages.len();
        let mut out = format!(
            "* {n} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY {}] UID validity status\r\n\
             * OK [UIDNEXT {}] Predicted next UID\r\n* FLAGS ({ALL_FLAGS})\r\n\
             * OK [PERMANENTFLAGS ({ALL_FLAGS} \\*)] Permanent flags\r\n",
            mb.uid_validity, mb.uid_next
        )
        .into_bytes();
        drop(store);
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        out.extend(tagged(tag, &format!("OK [{mode}] SELECT complete")));
        self.state = State::Selected { index, known: n };
        out
    }

    fn list(&self, tag: &[u8], name: &[u8], args: &[Tok]) -> Vec<u8> {
        let (Some(reference), Some(pattern)) = (
            args.first().and_then(Tok::astring),
            args.get(1).and_then(Tok::astring),
        ) else {
            return tagged(tag, "BAD Invalid arguments");
        };
        let word = String::from_utf8_lossy(name);
        let mut out = Vec::new();
        if pattern.is_empty() {
            // RFC 3501 §6.3.8: an empty pattern asks for the hierarchy delimiter.
            out.extend(format!("* {word} (\\Noselect) \"/\" \"\"\r\n").into_bytes());
        } else {
            let full = [reference, pattern].concat();
            let store = lock(&self.shared.store);
            for mb in store
                .iter()
                .filter(|m| cmd::wildcard(&full, m.name.as_bytes()))
            {
                let prefix = format!("{}/", mb.name);
                let children = store.iter().any(|m| m.name.starts_with(&prefix));
                let attrs = match (mb.selectable, children) {
                    (false, _) => r"\Noselect \HasChildren",
                    (true, true) => r"\HasChildren",
                    (true, false) => r"\HasNoChildren",
                };
                out.extend(format!("* {word} ({attrs}) \"/\" ").into_bytes());
                out.extend(cmd::quote(mb.name.as_bytes()));
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend(tagged(tag, &format!("OK {word} completed")));
        out
    }

    /// `* N EXISTS` if the selected mailbox grew since the client was last told.
    fn report_exists(&mut self) -> Vec<u8> {
        let State::Selected { index, known } = &mut self.state else {
            return Vec::new();
        };
        let count = lock(&self.shared.store)
            .get(*index)
            .map_or(0, |m| m.messages.len());
        if count > *known {
            *known = count;
            format!("* {count} EXISTS\r\n").into_bytes()
        } else {
            Vec::new()
        }
    }

    /// The selected mailbox's messages whose number (or UID) is in `set`, with their
    /// sequence numbers; `None` if the set does not parse.
    fn matching(&self, set: &Tok, uid: bool) -> Option<Vec<(usize, Message)>> {
        let State::Selected { index, .. } = self.state else {
            return None;
        };
        let store = lock(&self.shared.store);
        let msgs = &store.get(index)?.messages;
        let star = if uid {
            msgs.last().map_or(0, |m| m.uid)
        } else {
            u32::try_from(msgs.len()).ok()?
        };
        let ranges = cmd::seq_set(set.astring()?, star)?;
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let seq = i + 1;
            let key = if uid { m.uid } else { u32::try_from(seq).ok()? };
            if ranges.iter().any(|(a, b)| (*a..=*b).contains(&key)) {
                out.push((seq, m.clone()));
            }
        }
        Some(out)
    }

    /// FETCH / UID FETCH, streaming each literal straight from the shared bytes.
    async fn fetch(&mut self, tag: &[u8], args: &[Tok], uid: bool) -> io::Result<Flow> {
        let parsed = args.split_first().and_then(|(set, rest)| {
            let mut items = cmd::fetch_items(rest)?;
            // RFC 3501 §6.4.8: UID FETCH always returns the UID.
            if uid && !items.contains(&Item::Uid) {
                items.insert(0, Item::Uid);
            }
            Some((self.matching(set, uid)?, items))
        });
        let Some((msgs, items)) = parsed else {
            self.conn
                .send(&tagged(tag, "BAD Invalid FETCH arguments"))
                .await?;
            return Ok(Flow::Continue);
        };
        for (seq, m) in msgs {
            let mut text = format!("* {seq} FETCH (").into_bytes();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    text.push(b' ');
                }
                let (label, literal) = match item {
                    Item::Uid => (format!("UID {}", m.uid), None),
                    Item::Size => (format!("RFC822.SIZE {}", m.data.len()), None),
                    Item::Flags => ("FLAGS ()".to_owned(), None),
                    Item::InternalDate => (
                        "INTERNALDATE \"01-Jan-2024 08:00:00 +0800\"".to_owned(),
                        None,
                    ),
                    Item::Body => ("BODY[]".to_owned(), Some(m.data.clone())),
                    Item::Rfc822 => ("RFC822".to_owned(), Some(m.data.clone())),
                    Item::Header => ("BODY[HEADER]".to_owned(), Some(header(&m.data))),
                    Item::Rfc822Header => ("RFC822.HEADER".to_owned(), Some(header(&m.data))),
                };
                text.extend_from_slice(label.as_bytes());
                if let Some(data) = literal {
                    text.extend(format!(" {{{}}}\r\n", data.len()).into_bytes());
                    self.conn.write(&text).await?;
                    text.clear();
                    if let Fault::DropMidFetch { after_bytes } = *self.fault() {
                        let cut = data.slice(..after_bytes.min(data.len()));
                        self.conn.write(&cut).await?;
                        return Ok(Flow::Reset);
                    }
                    self.conn.write(&data).await?;
                }
            }
            text.extend_from_slice(b")\r\n");
            self.conn.write(&text).await?;
        }
        self.conn.send(&tagged(tag, "OK FETCH completed")).await?;
        Ok(Flow::Continue)
    }

    /// SEARCH ALL / UID SEARCH ALL (no other criteria).
    fn search(&self, tag: &[u8], args: &[Tok], uid: bool) -> Vec<u8> {
        if args.len() != 1 || args.first().and_then(Tok::keyword).as_deref() != Some(b"ALL") {
            return tagged(tag, "BAD Only SEARCH ALL is supported");
        }
        let State::Selected { index, .. } = self.state else {
            return tagged(tag, "BAD No mailbox selected");
        };
        let mut out = b"* SEARCH".to_vec();
        if let Some(mb) = lock(&self.shared.store).get(index) {
            for (i, m) in mb.messages.iter().enumerate() {
                let n = if uid { m.uid as usize } else { i + 1 };
                out.extend(format!(" {n}").into_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend(tagged(tag, "OK SEARCH completed"));
        out
    }

    /// IDLE (RFC 2177): `+ idling`, then `* N EXISTS` whenever the selected mailbox grows,
    /// until `DONE`.
    async fn idle(&mut self, tag: &[u8]) -> io::Result<Flow> {
        // Subscribe before answering, so a message added right after `+ idling` is seen.
        let mut changed = self.shared.changed.subscribe();
        self.conn.send(b"+ idling\r\n").await?;
        // A reset right after `+ idling` could destroy that line unread (an RST discards
        // the peer's receive queue), so the fault waits for the next `add_message`, when
        // the client has certainly seen it and is idling.
        let drop_on_change = matches!(self.fault(), Fault::DropDuringIdle);
        loop {
            let push = self.report_exists();
            if !push.is_empty() {
                self.conn.send(&push).await?;
            }
            if let Some(line) = self.conn.take_line(MAX_LINE)? {
                self.record(&line);
                let answer = if line.eq_ignore_ascii_case(b"DONE") {
                    "OK IDLE terminated"
                } else {
                    "BAD Expected DONE"
                };
                self.conn.send(&tagged(tag, answer)).await?;
                return Ok(Flow::Continue);
            }
            tokio::select! {
                r = changed.changed() => match r {
                    Err(_) => return Ok(Flow::Close),
                    Ok(()) if drop_on_change => return Ok(Flow::Reset),
                    Ok(()) => {}
                },
                r = self.conn.fill() => if !r? { return Ok(Flow::Close) },
            }
        }
    }
}

/// The header section: up to and including the first empty line (all of it if none).
fn header(data: &Bytes) -> Bytes {
    let end = memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |p| p + 4);
    data.slice(..end)
}
