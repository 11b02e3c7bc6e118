//! What this binary was built from and for, as `qqmail-proxy --version` prints it: the
//! package version, the target triple, the enabled Cargo features and the git commit
//! (set by build.rs; "unknown" for a build outside a git checkout).

/// The text after the program name in `--version`, e.g.
/// `0.1.0 (aarch64-unknown-linux-gnu; features: none; commit 0123456789ab)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("QQMAIL_BUILD_TARGET"),
    "; features: ",
    env!("QQMAIL_BUILD_FEATURES"),
    "; commit ",
    env!("QQMAIL_BUILD_COMMIT"),
    ")"
);
