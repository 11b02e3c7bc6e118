//! `FakeImap`: a fake imap.qq.com (IMAP4rev1 subset with QQ's greeting, folders and error
//! texts) on 127.0.0.1, with a shared mailbox store tests can change while clients IDLE.

mod cmd;
mod session;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

use super::upstream::{
    lock, recorder_methods, spawn_server, Fault, Recorder, ServerTask, TlsMode, DEFAULT_CODE,
    DEFAULT_USER,
};

/// QQ's capabilities after login (in the tagged OK of LOGIN/AUTHENTICATE and CAPABILITY).
pub const QQ_POST_LOGIN_CAPS: &str =
    "IMAP4 IMAP4rev1 XLIST MOVE IDLE XAPPLEPUSHSERVICE NAMESPACE CHILDREN ID UIDPLUS";

/// "其他文件夹" ("other folders") in modified UTF-7: QQ's non-selectable parent folder.
pub const QQ_OTHER_FOLDERS: &str = "&UXZO1mWHTvZZOQ-";
/// A child of [`QQ_OTHER_FOLDERS`] ("QQ邮件订阅"), selectable.
pub const QQ_SUBSCRIPTIONS: &str = "&UXZO1mWHTvZZOQ-/QQ&kK5O9ouilgU-";

/// The folders a fresh fake lists, in order, with whether each is selectable.
const QQ_FOLDERS: &[(&str, bool)] = &[
    ("INBOX", true),
    ("Sent Messages", true),
    ("Drafts", true),
    ("Deleted Messages", true),
    ("Junk", true),
    (QQ_OTHER_FOLDERS, false),
    (QQ_SUBSCRIPTIONS, true),
];

/// Options for [`FakeImap::start`]; `Default` is plaintext without STARTTLS, the default
/// account, no fault and QQ's folders, all empty.
#[derive(Clone, Debug)]
pub struct ImapOpts {
    /// TLS mode.
    pub tls: TlsMode,
    /// The account (email) accepted.
    pub user: String,
    /// The authorization code accepted.
    pub code: String,
    /// Misbehaviour to show.
    pub fault: Fault,
    /// Capabilities announced after login.
    pub post_login_caps: String,
    /// NetEase 163 behaviour: SELECT/EXAMINE before an `ID` command in the session fails
    /// with `NO SELECT Unsafe Login. Please contact kefu@188.com for help`.
    pub require_id_before_select: bool,
    /// Messages present at start: (mailbox, RFC 5322 bytes).
    pub messages: Vec<(String, Bytes)>,
}

impl Default for ImapOpts {
    fn default() -> Self {
        ImapOpts {
            tls: TlsMode::PlainNoStartTls,
            user: DEFAULT_USER.to_owned(),
            code: DEFAULT_CODE.to_owned(),
            fault: Fault::None,
            post_login_caps: QQ_POST_LOGIN_CAPS.to_owned(),
            require_id_before_select: false,
            messages: Vec::new(),
        }
    }
}

impl ImapOpts {
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
    /// Sets the capabilities announced after login (space-separated).
    pub fn post_login_caps(mut self, caps: &str) -> Self {
        self.post_login_caps = caps.to_owned();
        self
    }
    /// Requires `ID` before SELECT/EXAMINE, like NetEase 163.
    pub fn require_id_before_select(mut self, on: bool) -> Self {
        self.require_id_before_select = on;
        self
    }
    /// Adds a message present at start.
    pub fn message(mut self, mailbox: &str, bytes: impl Into<Bytes>) -> Self {
        self.messages.push((mailbox.to_owned(), bytes.into()));
        self
    }
}

/// One stored message; the bytes are shared by every session that fetches it.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) uid: u32,
    pub(crate) data: Bytes,
}

/// One mailbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    pub(crate) name: String,
    pub(crate) selectable: bool,
    pub(crate) uid_validity: u32,
    pub(crate) uid_next: u32,
    pub(crate) messages: Vec<Message>,
}

impl Mailbox {
    fn new(name: &str, selectable: bool, index: usize) -> Mailbox {
        Mailbox {
            name: name.to_owned(),
            selectable,
            uid_validity: 1_700_000_000u32.saturating_add(u32::try_from(index).unwrap_or(0)),
            uid_next: 1,
            messages: Vec::new(),
        }
    }

    /// Whether `name` (bytes from a command) names this mailbox; INBOX is case-insensitive
    /// (RFC 3501 §5.1).
    pub(crate) fn is(&self, name: &[u8]) -> bool {
        if self.name == "INBOX" {
            name.eq_ignore_ascii_case(b"INBOX")
        } else {
            self.name.as_bytes() == name
        }
    }
}

/// State shared by the handle and every session.
pub(crate) struct Shared {
    pub(crate) opts: ImapOpts,
    pub(crate) rec: Recorder,
    pub(crate) store: Mutex<Vec<Mailbox>>,
    /// Bumped on every `add_message`; IDLE-ing sessions wait on it.
    pub(crate) changed: watch::Sender<u64>,
    /// Raw arguments of every `ID` command received.
    pub(crate) ids: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    /// Appends a message, creating the mailbox if needed; returns its UID.
    fn add(&self, mailbox: &str, data: Bytes) -> u32 {
        let uid = {
            let mut store = lock(&self.store);
            let index = match store.iter().position(|m| m.is(mailbox.as_bytes())) {
                Some(i) => i,
                None => {
                    let n = store.len();
                    store.push(Mailbox::new(mailbox, true, n));
                    n
                }
            };
            let Some(mb) = store.get_mut(index) else {
                return 0;
            };
            let uid = mb.uid_next;
            mb.uid_next += 1;
            mb.messages.push(Message { uid, data });
            uid
        };
        self.changed.send_modify(|t| *t = t.wrapping_add(1));
        uid
    }
}

/// A running fake IMAP server; dropping it stops the server and its sessions.
pub struct FakeImap {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _task: ServerTask,
}

impl FakeImap {
    /// Binds 127.0.0.1:0 and serves any number of concurrent connections.
    pub async fn start(opts: ImapOpts) -> FakeImap {
        let store = QQ_FOLDERS
            .iter()
            .enumerate()
            .map(|(i, (name, selectable))| Mailbox::new(name, *selectable, i))
            .collect();
        let initial = opts.messages.clone();
        let shared = Arc::new(Shared {
            opts,
            rec: Recorder::default(),
            store: Mutex::new(store),
            changed: watch::channel(0).0,
            ids: Mutex::new(Vec::new()),
        });
        for (mailbox, data) in initial {
            shared.add(&mailbox, data);
        }
        let for_server = shared.clone();
        let (addr, task) = spawn_server(move |tcp| session::run(for_server.clone(), tcp)).await;
        FakeImap {
            addr,
            shared,
            _task: task,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a message to `mailbox` (created if unknown) and wakes every session IDLE-ing
    /// on it, which then sends `* N EXISTS`. Returns the new message's UID.
    pub fn add_message(&self, mailbox: &str, bytes: impl Into<Bytes>) -> u32 {
        self.shared.add(mailbox, bytes.into())
    }

    /// Number of messages in `mailbox` (0 if unknown).
    pub fn message_count(&self, mailbox: &str) -> usize {
        lock(&self.shared.store)
            .iter()
            .find(|m| m.is(mailbox.as_bytes()))
            .map_or(0, |m| m.messages.len())
    }

    /// The raw arguments of every `ID` command received (e.g. `("name" "x")` or `NIL`).
    pub fn ids(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.ids).clone()
    }

    recorder_methods!();
}
