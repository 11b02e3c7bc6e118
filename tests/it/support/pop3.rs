//! `FakePop3`: a fake pop.qq.com on 127.0.0.1 — RFC 1939 with CAPA (RFC 2449), STLS
//! (RFC 2595) and AUTH PLAIN (RFC 5034), QQ's greeting and error texts.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use tokio::net::TcpStream;

use super::upstream::{
    lock, recorder_methods, spawn_server, Conn, Fault, LoginAttempt, LoginMethod, Recorder,
    ServerTask, TlsMode, DEFAULT_CODE, DEFAULT_USER, GBK_READY, QQ_LOGIN_FAIL,
};

/// QQ's POP3 greeting line (without CRLF).
pub const QQ_POP3_GREETING: &str = "+OK QQMail POP3 Server v1.0 Service Ready(QQMail v2.0)";
/// Longest command line accepted (RFC 2449 §4 allows 255; AUTH blobs may be longer).
const MAX_LINE: usize = 8 * 1024;

/// Options for [`FakePop3::start`]; `Default` is plaintext without STLS, the default
/// account, no fault and an empty maildrop.
#[derive(Clone, Debug)]
pub struct Pop3Opts {
    /// TLS mode.
    pub tls: TlsMode,
    /// The account (email) accepted.
    pub user: String,
    /// The authorization code accepted.
    pub code: String,
    /// Misbehaviour to show.
    pub fault: Fault,
    /// Messages present at start (RFC 5322 bytes, CRLF line endings).
    pub messages: Vec<Bytes>,
}

impl Default for Pop3Opts {
    fn default() -> Self {
        Pop3Opts {
            tls: TlsMode::PlainNoStartTls,
            user: DEFAULT_USER.to_owned(),
            code: DEFAULT_CODE.to_owned(),
            fault: Fault::None,
            messages: Vec::new(),
        }
    }
}

impl Pop3Opts {
    /// Sets the TLS mode.
    pub fn tls(mut self, tls: TlsMode) -> Self {
        self.tls = tls;
        self
    }
    /// Sets the accepted account.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }
    /// Sets the accepted authorization code.
    pub fn code(mut self, code: &str) -> Self {
        self.code = code.to_owned();
        self
    }
    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }
    /// Adds a message present at start.
    pub fn message(mut self, bytes: impl Into<Bytes>) -> Self {
        self.messages.push(bytes.into());
        self
    }
}

/// A message with its wire form computed once, shared by every session.
#[derive(Debug)]
struct PopMsg {
    uidl: String,
    data: Bytes,
    /// Dot-stuffed, ending in CRLF, without the terminating `.` line (RFC 1939 §3).
    stuffed: Bytes,
}

/// Byte-stuffs `data` for a multi-line response (RFC 1939 §3): a line starting with `.`
/// gets another `.`; a missing final CRLF is added so the terminator starts a line.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 2);
    for line in data.split_inclusive(|c| *c == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

struct Shared {
    opts: Pop3Opts,
    rec: Recorder,
    maildrop: Mutex<Vec<Arc<PopMsg>>>,
    next_uidl: Mutex<u32>,
}

impl Shared {
    fn add(&self, data: Bytes) -> String {
        let uidl = {
            let mut n = lock(&self.next_uidl);
            *n += 1;
            format!("ZC{:04}-QQMailFakeUidl{:08}", *n % 10_000, *n)
        };
        let stuffed = Bytes::from(dot_stuff(&data));
        let msg = PopMsg {
            uidl: uidl.clone(),
            data,
            stuffed,
        };
        lock(&self.maildrop).push(Arc::new(msg));
        uidl
    }
}

/// A running fake POP3 server; dropping it stops the server and its sessions.
pub struct FakePop3 {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _task: ServerTask,
}

impl FakePop3 {
    /// Binds 127.0.0.1:0 and serves any number of concurrent connections.
    pub async fn start(mut opts: Pop3Opts) -> FakePop3 {
        let initial = std::mem::take(&mut opts.messages);
        let shared = Arc::new(Shared {
            opts,
            rec: Recorder::default(),
            maildrop: Mutex::new(Vec::new()),
            next_uidl: Mutex::new(0),
        });
        for m in initial {
            shared.add(m);
        }
        let for_server = shared.clone();
        let (addr, task) = spawn_server(move |tcp| run(for_server.clone(), tcp)).await;
        FakePop3 {
            addr,
            shared,
            _task: task,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a message to the maildrop (seen by sessions that log in afterwards, as the
    /// maildrop is fixed at login: RFC 1939 §8); returns its UIDL.
    pub fn add_message(&self, bytes: impl Into<Bytes>) -> String {
        self.shared.add(bytes.into())
    }

    /// The messages in the maildrop now (DELE takes effect at QUIT: RFC 1939 §6).
    pub fn messages(&self) -> Vec<Bytes> {
        lock(&self.shared.maildrop)
            .iter()
            .map(|m| m.data.clone())
            .collect()
    }

    recorder_methods!();
}

/// Where the session is (RFC 1939 §3).
enum State {
    Authorization {
        /// The name given by USER, waiting for PASS.
        user: Option<Vec<u8>>,
    },
    Transaction {
        /// The maildrop as of login.
        msgs: Vec<Arc<PopMsg>>,
        /// Marked by DELE, cleared by RSET, applied at QUIT.
        deleted: Vec<bool>,
    },
}

enum Flow {
    Continue,
    Close,
    Reset,
}

struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    state: State,
}

async fn run(shared: Arc<Shared>, tcp: TcpStream) {
    let Some(conn) = Conn::open(tcp, &shared.opts.tls, &shared.rec).await else {
        return;
    };
    let mut s = Session {
        shared,
        conn,
        state: State::Authorization { user: None },
    };
    match s.serve().await {
        Ok(Flow::Reset) => s.conn.reset().await,
        Ok(_) => s.conn.close().await,
        Err(_) => {}
    }
}

fn ok(text: &str) -> Vec<u8> {
    format!("+OK {text}\r\n").into_bytes()
}

fn err(text: &str) -> Vec<u8> {
    format!("-ERR {text}\r\n").into_bytes()
}

impl Session {
    fn fault(&self) -> &Fault {
        &self.shared.opts.fault
    }

    fn record(&self, line: &[u8]) {
        self.shared.rec.update(|l| l.commands.push(line.to_vec()));
    }

    fn stls_offered(&self) -> bool {
        matches!(self.shared.opts.tls, TlsMode::StartTls(_)) && !self.conn.is_tls()
    }

    async fn serve(&mut self) -> io::Result<Flow> {
        if let Fault::NoGreeting = self.fault() {
            self.conn.silence().await;
            return Ok(Flow::Close);
        }
        self.fault().delay().await;
        let greeting = match self.fault() {
            Fault::GbkGreeting => [b"+OK QQMail POP3 Server ", GBK_READY, b"\r\n"].concat(),
            _ => format!("{QQ_POP3_GREETING}\r\n").into_bytes(),
        };
        self.conn.send(&greeting).await?;
        loop {
            let Some(line) = self.conn.read_line(MAX_LINE).await? else {
                return Ok(Flow::Close);
            };
            self.record(&line);
            self.fault().delay().await;
            match self.command(&line).await? {
                Flow::Continue => {}
                other => return Ok(other),
            }
        }
    }

    async fn command(&mut self, line: &[u8]) -> io::Result<Flow> {
        let (word, arg) = match memchr::memchr(b' ', line) {
            Some(sp) => (line.get(..sp).unwrap_or_default(), line.get(sp + 1..)),
            None => (line, None),
        };
        let word = word.to_ascii_uppercase();
        let authed = matches!(self.state, State::Transaction { .. });
        let reply = match (word.as_slice(), authed) {
            (b"CAPA", _) => {
                let stls = if self.stls_offered() { "STLS\r\n" } else { "" };
                format!(
                    "+OK Capability list follows\r\nTOP\r\nUSER\r\nPIPELINING\r\nUIDL\r\n\
                     SASL PLAIN\r\n{stls}.\r\n"
                )
                .into_bytes()
            }
            (b"QUIT", _) => {
                self.commit();
                self.conn.send(&ok("Bye")).await?;
                return Ok(Flow::Close);
            }
            (b"STLS", false) if self.stls_offered() => {
                let TlsMode::StartTls(cfg) = self.shared.opts.tls.clone() else {
                    return Ok(Flow::Close);
                };
                self.conn
                    .send(&ok("Begin SSL/TLS negotiation now."))
                    .await?;
                self.conn.starttls(&cfg, &self.shared.rec).await?;
                return Ok(Flow::Continue);
            }
            (b"STLS", _) => err("STLS not available"),
            (b"USER", false) => match arg {
                Some(user) if !user.is_empty() => {
                    self.state = State::Authorization {
                        user: Some(user.to_vec()),
                    };
                    ok("")
                }
                _ => err("Missing user name"),
            },
            // RFC 1939 §7: the PASS argument is the rest of the line, spaces included.
            (b"PASS", false) => match &mut self.state {
                State::Authorization { user } => match user.take() {
                    Some(user) => {
                        self.login(LoginMethod::Pop3UserPass, &user, arg.unwrap_or_default())
                    }
                    None => err("USER first"),
                },
                State::Transaction { .. } => err("Already logged in"),
            },
            (b"AUTH", false) => match self.auth(arg.unwrap_or_default()).await? {
                Some(reply) => reply,
                None => return Ok(Flow::Close),
            },
            (b"USER" | b"PASS" | b"AUTH", true) => err("Already logged in"),
            (
                b"STAT" | b"LIST" | b"UIDL" | b"RETR" | b"TOP" | b"DELE" | b"RSET" | b"NOOP",
                false,
            ) => err("Please login first"),
            (b"RETR", true) => return self.retr(arg).await,
            (_, true) => self.transaction(&word, arg),
            _ => err("Unknown command"),
        };
        self.conn.send(&reply).await?;
        Ok(Flow::Continue)
    }

    /// Checks credentials, records the attempt, and enters TRANSACTION on success.
    fn login(&mut self, method: LoginMethod, user: &[u8], pass: &[u8]) -> Vec<u8> {
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
        if !accepted {
            self.state = State::Authorization { user: None };
            return err(QQ_LOGIN_FAIL);
        }
        let msgs = lock(&self.shared.maildrop).clone();
        let deleted = vec![false; msgs.len()];
        self.state = State::Transaction { msgs, deleted };
        ok("Authentication successful")
    }

    /// AUTH PLAIN with an initial response or after `+ ` (RFC 5034 §4). `None` if the
    /// client went away mid-exchange.
    async fn auth(&mut self, arg: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut parts = arg.splitn(2, |c| *c == b' ');
        let mech = parts.next().unwrap_or_default().to_ascii_uppercase();
        if mech.is_empty() {
            return Ok(Some(b"+OK\r\nPLAIN\r\n.\r\n".to_vec()));
        }
        if mech != b"PLAIN" {
            return Ok(Some(err("Unsupported authentication mechanism")));
        }
        let blob = match parts.next() {
            Some(b"=") => Vec::new(),
            Some(ir) => ir.to_vec(),
            None => {
                self.conn.send(b"+ \r\n").await?;
                let Some(line) = self.conn.read_line(MAX_LINE).await? else {
                    return Ok(None);
                };
                self.record(&line);
                line
            }
        };
        if blob == b"*" {
            return Ok(Some(err("AUTH cancelled")));
        }
        let Ok(msg) = base64::engine::general_purpose::STANDARD.decode(&blob) else {
            return Ok(Some(err("Invalid base64")));
        };
        let mut fields = msg.split(|c| *c == 0);
        Ok(Some(
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some(_authz), Some(user), Some(pass), None) => {
                    self.login(LoginMethod::Pop3AuthPlain, user, pass)
                }
                _ => err("Invalid PLAIN message"),
            },
        ))
    }

    /// The live message numbered by `arg` (1-based), or the error reply.
    fn pick(&self, arg: Option<&[u8]>) -> Result<(usize, Arc<PopMsg>), Vec<u8>> {
        let State::Transaction { msgs, deleted } = &self.state else {
            return Err(err("Please login first"));
        };
        let n: usize = arg
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| err("Invalid message number"))?;
        let i = n.checked_sub(1).ok_or_else(|| err("No such message"))?;
        match (msgs.get(i), deleted.get(i)) {
            (Some(m), Some(false)) => Ok((n, m.clone())),
            (Some(_), _) => Err(err("Message already deleted")),
            _ => Err(err("No such message")),
        }
    }

    /// STAT, LIST, UIDL, TOP, DELE, RSET, NOOP.
    fn transaction(&mut self, word: &[u8], arg: Option<&[u8]>) -> Vec<u8> {
        let arg = arg.filter(|a| !a.is_empty());
        let State::Transaction { msgs, deleted } = &mut self.state else {
            return err("Please login first");
        };
        let live = || {
            msgs.iter()
                .zip(deleted.iter())
                .enumerate()
                .filter(|(_, (_, d))| !**d)
                .map(|(i, (m, _))| (i + 1, m))
        };
        let total: usize = live().map(|(_, m)| m.data.len()).sum();
        match (word, arg) {
            (b"STAT", _) => ok(&format!("{} {total}", live().count())),
            (b"LIST", None) => {
                let mut out = ok(&format!("{} messages ({total} octets)", live().count()));
                for (n, m) in live() {
                    out.extend(format!("{n} {}\r\n", m.data.len()).into_bytes());
                }
                out.extend_from_slice(b".\r\n");
                out
            }
            (b"UIDL", None) => {
                let mut out = ok("");
                for (n, m) in live() {
                    out.extend(format!("{n} {}\r\n", m.uidl).into_bytes());
                }
                out.extend_from_slice(b".\r\n");
                out
            }
            (b"RSET", _) => {
                deleted.iter_mut().for_each(|d| *d = false);
                ok("")
            }
            (b"NOOP", _) => ok(""),
            (b"LIST" | b"UIDL" | b"DELE", Some(_)) => match self.pick(arg) {
                Ok((n, m)) => match word {
                    b"LIST" => ok(&format!("{n} {}", m.data.len())),
                    b"UIDL" => ok(&format!("{n} {}", m.uidl)),
                    _ => {
                        if let State::Transaction { deleted, .. } = &mut self.state {
                            if let Some(d) = deleted.get_mut(n - 1) {
                                *d = true;
                            }
                        }
                        ok(&format!("message {n} deleted"))
                    }
                },
                Err(reply) => reply,
            },
            (b"TOP", Some(a)) => {
                let mut it = a.splitn(2, |c| *c == b' ');
                let (num, lines) = (it.next(), it.next());
                let lines = lines
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| l.trim().parse::<usize>().ok());
                match (self.pick(num), lines) {
                    (Ok((_, m)), Some(lines)) => {
                        let mut out = ok("");
                        out.extend(dot_stuff(top(&m.data, lines)));
                        out.extend_from_slice(b".\r\n");
                        out
                    }
                    (Err(reply), _) => reply,
                    (_, None) => err("Invalid line count"),
                }
            }
            _ => err("Unknown command"),
        }
    }

    /// RETR: streams the precomputed stuffed bytes; [`Fault::DropMidRetr`] cuts them.
    async fn retr(&mut self, arg: Option<&[u8]>) -> io::Result<Flow> {
        let (_, m) = match self.pick(arg) {
            Ok(found) => found,
            Err(reply) => {
                self.conn.send(&reply).await?;
                return Ok(Flow::Continue);
            }
        };
        self.conn
            .write(&ok(&format!("{} octets", m.data.len())))
            .await?;
        if let Fault::DropMidRetr { after_bytes } = *self.fault() {
            let cut = m.stuffed.slice(..after_bytes.min(m.stuffed.len()));
            self.conn.write(&cut).await?;
            return Ok(Flow::Reset);
        }
        self.conn.write(&m.stuffed).await?;
        self.conn.send(b".\r\n").await?;
        Ok(Flow::Continue)
    }

    /// At QUIT in TRANSACTION, removes the DELE'd messages (RFC 1939 §6, UPDATE state).
    fn commit(&mut self) {
        let State::Transaction { msgs, deleted } = &self.state else {
            return;
        };
        let gone: Vec<&Arc<PopMsg>> = msgs
            .iter()
            .zip(deleted)
            .filter_map(|(m, d)| d.then_some(m))
            .collect();
        lock(&self.shared.maildrop).retain(|m| !gone.iter().any(|g| Arc::ptr_eq(g, m)));
    }
}

/// The header, the blank line and the first `lines` body lines (RFC 1939 §7, TOP).
fn top(data: &[u8], lines: usize) -> &[u8] {
    let head = memchr::memmem::find(data, b"\r\n\r\n").map_or(data.len(), |p| p + 4);
    let body = data.get(head..).unwrap_or_default();
    let len: usize = body
        .split_inclusive(|c| *c == b'\n')
        .take(lines)
        .map(<[u8]>::len)
        .sum();
    data.get(..head + len).unwrap_or(data)
}

#[test]
fn dot_stuff_and_top_table() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"", b""),
        (b"a\r\n", b"a\r\n"),
        (b"a", b"a\r\n"),
        (b".\r\n", b"..\r\n"),
        (
            b"x\r\n.hidden\r\n..two\r\nend",
            b"x\r\n..hidden\r\n...two\r\nend\r\n",
        ),
        (b"a.b\r\n .c\r\n", b"a.b\r\n .c\r\n"),
    ];
    for (input, want) in cases {
        assert_eq!(
            dot_stuff(input),
            *want,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let msg = b"Subject: s\r\n\r\nl1\r\nl2\r\nl3\r\n";
    assert_eq!(top(msg, 0), b"Subject: s\r\n\r\n");
    assert_eq!(top(msg, 2), b"Subject: s\r\n\r\nl1\r\nl2\r\n");
    assert_eq!(top(msg, 9), msg);
}
