//! The Sent copy on its way to the mailbox: a temporary file in `state_dir/sent/` (mode
//! 0600, the directory 0700), written as the message streams upstream, so that the whole
//! message is never held in memory. The bytes come in SMTP transmission form (dot-stuffed,
//! maybe ending with the `.` line); the file holds the message itself (RFC 5321 §4.5.2
//! transparency undone), which is what an IMAP APPEND carries. A file's name says whose
//! copy it is (`<hex account id>.<random>.eml`), so one left by a crash can be retried.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// The subdirectory of `state_dir` holding copies not yet appended.
pub const DIR: &str = "sent";

/// Undoes dot-stuffing (RFC 5321 §4.5.2) across chunk boundaries: a line (after CRLF, or
/// the start) beginning with `.` loses that dot; the line `.` alone ends the message and
/// anything after it is ignored. Lines begin only after CRLF, as in SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unstuff {
    /// At the start of a line.
    #[default]
    LineStart,
    /// Inside a line; the last byte was not CR.
    Inside,
    /// Inside a line, just after a CR.
    AfterCr,
    /// A line's leading dot was dropped.
    Dot,
    /// `.` then CR at the start of a line: the end if LF follows.
    DotCr,
    /// The `.` line was seen: the message is whole.
    Ended,
}

impl Unstuff {
    /// Appends what `input` contributes to the message to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            *self = match (*self, b) {
                (Unstuff::Ended, _) => return,
                (Unstuff::LineStart, b'.') => Unstuff::Dot,
                (Unstuff::Dot, b'\r') => Unstuff::DotCr,
                (Unstuff::DotCr, b'\n') => Unstuff::Ended,
                (Unstuff::DotCr, b) => {
                    // `.` CR and not LF: a bare CR after the (dropped) dot.
                    out.push(b'\r');
                    out.push(b);
                    Self::after(b)
                }
                (_, b) => {
                    out.push(b);
                    match (*self, b) {
                        (Unstuff::AfterCr, b'\n') => Unstuff::LineStart,
                        _ => Self::after(b),
                    }
                }
            };
        }
    }

    fn after(b: u8) -> Unstuff {
        if b == b'\r' {
            Unstuff::AfterCr
        } else {
            Unstuff::Inside
        }
    }

    /// What ends the message in `out`: a CR held after a leading dot, and a CRLF when the
    /// message does not end with one (as the queue's deliverer sends it before the dot).
    pub fn finish(self, out: &mut Vec<u8>) {
        match self {
            Unstuff::LineStart | Unstuff::Ended => {}
            Unstuff::DotCr => out.extend_from_slice(b"\r\r\n"),
            Unstuff::AfterCr | Unstuff::Inside | Unstuff::Dot => out.extend_from_slice(b"\r\n"),
        }
    }
}

/// A copy being written. Dropped before [`CopyFile::finish`], or after a failed write, it
/// removes its file.
pub struct CopyFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    state: Unstuff,
    size: u64,
    buf: Vec<u8>,
}

/// A copy written whole, waiting for its APPEND. Dropping it does not remove the file
/// (the Sent task owns it from here, and removes it when done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its size: the APPEND literal's.
    pub size: u64,
}

impl CopyFile {
    /// Creates `state_dir/sent/<hex(account)>.<random>.eml`, mode 0600 (the directory
    /// 0700), for `account`'s copy.
    pub async fn create(state_dir: &Path, account: &str) -> std::io::Result<CopyFile> {
        let dir = state_dir.join(DIR);
        let mut builder = tokio::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(&dir).await?;
        let path = dir.join(file_name(account));
        let mut open = tokio::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        open.mode(0o600);
        let file = open.open(&path).await?;
        Ok(CopyFile {
            path,
            file: Some(file),
            state: Unstuff::default(),
            size: 0,
            buf: Vec::new(),
        })
    }

    /// Adds bytes in transmission form; `Err` once a write failed (the file is then gone).
    pub async fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.buf.clear();
        self.state.feed(bytes, &mut self.buf);
        self.write_buf().await
    }

    async fn write_buf(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("an earlier write failed"));
        };
        if let Err(e) = file.write_all(&self.buf).await {
            self.file = None;
            return Err(e);
        }
        self.size += self.buf.len() as u64;
        Ok(())
    }

    /// Ends the message, flushes and closes the file.
    pub async fn finish(mut self) -> std::io::Result<Written> {
        self.buf.clear();
        self.state.finish(&mut self.buf);
        self.write_buf().await?;
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        let path = std::mem::take(&mut self.path);
        Ok(Written {
            path,
            size: self.size,
        })
    }
}

/// A copy of a stored (dot-stuffed) body, `account`'s, read in 64 KiB pieces.
pub async fn copy_of(state_dir: &Path, account: &str, body: &Path) -> std::io::Result<Written> {
    use tokio::io::AsyncReadExt;
    let mut copy = CopyFile::create(state_dir, account).await?;
    let mut from = tokio::fs::File::open(body).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return copy.finish().await;
        }
        copy.push(&buf[..n]).await?;
    }
}

impl Drop for CopyFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Unfinished: the message never reached the upstream's 250, or a write failed.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `<hex(account)>.<random>.eml`: hex keeps any account id a safe file name.
fn file_name(account: &str) -> String {
    let hex: String = account.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{:016x}.eml", rand::random::<u64>())
}

/// The account whose copy `name` is, if it is a copy's file name.
pub fn account_of(name: &str) -> Option<String> {
    let (hex, rest) = name.split_once('.')?;
    let (random, ext) = rest.split_once('.')?;
    if ext != "eml" || random.len() != 16 || hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests;
