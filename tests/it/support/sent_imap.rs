//! `SentImap`: a tiny implicit-TLS IMAP upstream for `save_sent` tests. It speaks only
//! what a Sent copy needs (LOGIN, CAPABILITY, LIST, XLIST, APPEND with a synchronizing or
//! LITERAL+ literal, LOGOUT) for the SMTP fake's account, answers LIST with the lines a test gives, and RECORDS every
//! APPEND (mailbox, flags, literal bytes) and every connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::smtp::{DEFAULT_CODE, DEFAULT_USER};
use super::upstream::{lock, recorder_methods, spawn_server, Conn, Recorder, ServerTask, TlsMode};

/// One APPEND received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The mailbox argument, as sent (quotes included).
    pub mailbox: String,
    /// The flag list, as sent (`(\Seen)`).
    pub flags: String,
    /// The literal's bytes.
    pub data: Vec<u8>,
}

/// What the fake says.
#[derive(Clone, Debug)]
pub struct SentOpts {
    /// Capabilities after login.
    pub caps: String,
    /// `* LIST ...` lines (without CRLF) answering `LIST "" "*"`.
    pub list: Vec<String>,
    /// `* XLIST ...` lines answering `XLIST "" "*"`.
    pub xlist: Vec<String>,
    /// The tagged reply text to an APPEND (after its literal), e.g. `OK APPEND completed`.
    pub append_reply: String,
}

impl Default for SentOpts {
    /// Dovecot-like: SPECIAL-USE, `Sent` marked `\Sent`, a folder named like QQ's too.
    fn default() -> Self {
        SentOpts {
            caps: "IMAP4rev1 SPECIAL-USE UIDPLUS".into(),
            list: vec![
                "* LIST (\\HasNoChildren) \"/\" INBOX".into(),
                "* LIST (\\HasNoChildren) \"/\" \"Sent Messages\"".into(),
                "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"".into(),
            ],
            xlist: Vec::new(),
            append_reply: "OK [APPENDUID 1 1] APPEND completed".into(),
        }
    }
}

struct Shared {
    opts: SentOpts,
    rec: Recorder,
    appended: Mutex<Vec<Appended>>,
}

/// A running fake; dropping it stops it.
pub struct SentImap {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _task: ServerTask,
}

impl SentImap {
    /// Binds 127.0.0.1:0 with implicit TLS from `tls`.
    pub async fn start(tls: Arc<rustls::ServerConfig>, opts: SentOpts) -> SentImap {
        let shared = Arc::new(Shared {
            opts,
            rec: Recorder::default(),
            appended: Mutex::new(Vec::new()),
        });
        let for_server = shared.clone();
        let mode = TlsMode::Implicit(tls);
        let (addr, task) =
            spawn_server(move |tcp| run(for_server.clone(), mode.clone(), tcp)).await;
        SentImap {
            addr,
            shared,
            _task: task,
        }
    }

    /// `tls://127.0.0.1:port`, for `imap_server`.
    pub fn config_server(&self) -> String {
        format!("tls://127.0.0.1:{}", self.addr.port())
    }

    /// Every APPEND so far.
    pub fn appended(&self) -> Vec<Appended> {
        lock(&self.shared.appended).clone()
    }

    /// Waits until `n` APPENDs arrived (or `timeout`), returning them.
    pub async fn wait_appended(&self, n: usize, timeout: Duration) -> Vec<Appended> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.appended();
            if got.len() >= n || tokio::time::Instant::now() >= end {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    recorder_methods!();
}

fn words(line: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(line)
        .trim_end()
        .splitn(3, ' ')
        .map(str::to_owned)
        .collect()
}

async fn run(shared: Arc<Shared>, mode: TlsMode, tcp: TcpStream) {
    let Some(mut conn) = Conn::open(tcp, &mode, &shared.rec).await else {
        return;
    };
    if serve(&shared, &mut conn).await.is_ok() {
        conn.close().await;
    }
}

async fn serve(shared: &Shared, conn: &mut Conn) -> std::io::Result<()> {
    conn.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake Sent ready\r\n")
        .await?;
    while let Some(line) = conn.read_line(64 * 1024).await? {
        shared.rec.update(|l| l.commands.push(line.clone()));
        let w = words(&line);
        let (tag, cmd, args) = match &w[..] {
            [t, c, a] => (t.clone(), c.to_ascii_uppercase(), a.clone()),
            [t, c] => (t.clone(), c.to_ascii_uppercase(), String::new()),
            _ => return Ok(()),
        };
        let reply = match cmd.as_str() {
            "LOGIN" => {
                let want = format!("\"{DEFAULT_USER}\" \"{DEFAULT_CODE}\"");
                if args == want {
                    format!(
                        "{tag} OK [CAPABILITY {}] LOGIN completed\r\n",
                        shared.opts.caps
                    )
                } else {
                    format!("{tag} NO LOGIN failed\r\n")
                }
            }
            "LIST" | "XLIST" => {
                let lines = if cmd == "LIST" {
                    &shared.opts.list
                } else {
                    &shared.opts.xlist
                };
                let mut out: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
                out.push_str(&format!("{tag} OK {cmd} completed\r\n"));
                out
            }
            "APPEND" => append(shared, conn, &tag, &args).await?,
            "LOGOUT" => {
                conn.send(format!("* BYE bye\r\n{tag} OK LOGOUT completed\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        conn.send(reply.as_bytes()).await?;
    }
    Ok(())
}

/// `APPEND mailbox (flags) {n}` or `{n+}`: reads the literal, records it, replies.
async fn append(
    shared: &Shared,
    conn: &mut Conn,
    tag: &str,
    args: &str,
) -> std::io::Result<String> {
    let Some(open) = args.rfind('{') else {
        return Ok(format!("{tag} BAD no literal\r\n"));
    };
    let spec = args[open + 1..].trim_end_matches('}');
    let plus = spec.ends_with('+');
    let Ok(n) = spec.trim_end_matches('+').parse::<usize>() else {
        return Ok(format!("{tag} BAD literal size\r\n"));
    };
    let head = args[..open].trim_end();
    let (mailbox, flags) = match head.find(" (") {
        Some(i) => (head[..i].to_owned(), head[i + 1..].to_owned()),
        None => (head.to_owned(), String::new()),
    };
    if !plus {
        conn.send(b"+ Ready for literal data\r\n").await?;
    }
    let Some(data) = conn.read_n(n).await? else {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    };
    // The CRLF that ends the command.
    conn.read_line(16).await?;
    lock(&shared.appended).push(Appended {
        mailbox,
        flags,
        data,
    });
    Ok(format!("{tag} {}\r\n", shared.opts.append_reply))
}
