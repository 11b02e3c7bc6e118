//! The trust rule for files the proxy believes (the rule OpenSSH applies to
//! `authorized_keys` and Postfix to its queue): the state directory, the generated
//! `local-users`, the local TLS key and certificate, and `auth_code_file`. Whoever can
//! write one of them can plant a password hash or a key, so each must be writable by its
//! owner only, and owned by the user the proxy runs as or by root. It also creates the
//! state directory private (0700) whatever the umask.

use std::path::Path;

use thiserror::Error;

/// What a checked path holds; it only chooses the fix the message proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory only this user should use (`state_dir`): `chmod 700`.
    PrivateDir,
    /// A file only this user should read (`local-users`, the key): `chmod 600`.
    PrivateFile,
    /// A file others may read but not write (the certificate, a code file that is a
    /// container secret mount): `chmod go-w`.
    SharedFile,
}

impl Kind {
    fn chmod(self) -> &'static str {
        match self {
            Kind::PrivateDir => "chmod 700",
            Kind::PrivateFile => "chmod 600",
            Kind::SharedFile => "chmod go-w",
        }
    }
}

/// Why a path is not trusted. The text names the path and the command that fixes it.
#[derive(Debug, Error)]
pub enum Distrust {
    /// Group or others may write it.
    #[error(
        "{path} is writable by {who} (mode {mode:03o}): another local user could plant a \
         password or key there; run `{chmod} {path}`"
    )]
    Writable {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
        /// "group", "others" or "group and others".
        who: &'static str,
        /// The command that fixes it.
        chmod: &'static str,
    },
    /// Owned by a user that is neither this process's nor root.
    #[error(
        "{path} is owned by uid {owner}, neither the uid the proxy runs as ({me}) nor root: \
         that user could plant a password or key there; run `chown {me} {path}` as root (or \
         delete it to have it generated again)"
    )]
    ForeignOwner {
        /// The path.
        path: String,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        me: u32,
    },
    /// Its owner and mode could not be read.
    #[error("{path}: cannot check its owner and mode: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the rule says about a mode and an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Trusted.
    Trusted,
    /// Writable by group and/or others (named).
    Writable(&'static str),
    /// Owned by another non-root user.
    ForeignOwner,
}

/// The rule itself, pure: writes by group or others are refused first (they are the
/// easier attack), then an owner that is neither `me` nor root.
pub fn judge(mode: u32, owner: u32, me: u32) -> Verdict {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => return Verdict::Writable("group and others"),
        (true, false) => return Verdict::Writable("group"),
        (false, true) => return Verdict::Writable("others"),
        (false, false) => {}
    }
    if owner != me && owner != 0 {
        return Verdict::ForeignOwner;
    }
    Verdict::Trusted
}

/// Applies the rule to `path` (symbolic links followed: what counts is the file read).
/// A path that does not exist is trusted: it will be created private.
pub fn check(path: &Path, kind: Kind) -> Result<(), Distrust> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(Distrust::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let me = rustix::process::geteuid().as_raw();
        let mode = meta.mode() & 0o777;
        match judge(mode, meta.uid(), me) {
            Verdict::Trusted => Ok(()),
            Verdict::Writable(who) => Err(Distrust::Writable {
                path: path.display().to_string(),
                mode,
                who,
                chmod: kind.chmod(),
            }),
            Verdict::ForeignOwner => Err(Distrust::ForeignOwner {
                path: path.display().to_string(),
                owner: meta.uid(),
                me,
            }),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, kind);
        Ok(())
    }
}

/// Creates `dir` and any missing parents with mode 0700 (not the umask's mode: under
/// `umask 000` a plain `create_dir_all` makes it world-writable). An existing directory
/// is left as it is; [`check`] judges it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests;
