//! Build information for `qqmail-proxy --version`: the target triple, the enabled Cargo
//! features and the git commit, handed to the crate as `QQMAIL_BUILD_*` environment
//! variables (read with `env!` in src/build_info.rs).
//!
//! The commit comes from `git rev-parse` when the source is a git checkout of this very
//! package, else from `QQMAIL_BUILD_COMMIT` (a release build from a tarball or a container
//! context without `.git` may set it), else it is "unknown". The script reruns only when
//! HEAD or the branch it points to moves, not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=QQMAIL_BUILD_COMMIT");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());

    let commit = match git_commit(&manifest) {
        Some(commit) => commit,
        None => std::env::var("QQMAIL_BUILD_COMMIT")
            .ok()
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=QQMAIL_BUILD_COMMIT={commit}");
    println!(
        "cargo:rustc-env=QQMAIL_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned())
    );
    println!("cargo:rustc-env=QQMAIL_BUILD_FEATURES={}", features());
}

/// The enabled features, sorted, comma-separated, or "none". Cargo hands each one to the
/// build script as `CARGO_FEATURE_<NAME>` (upper case, `-` as `_`); the crate's feature
/// names use `-`, so that is how they are shown.
fn features() -> String {
    let mut names: Vec<String> = std::env::vars()
        .filter_map(|(key, _)| {
            key.strip_prefix("CARGO_FEATURE_")
                .map(|name| name.to_ascii_lowercase().replace('_', "-"))
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    }
}

/// HEAD's commit (12 hex digits), when `manifest` is the top of a git work tree. Outside
/// one — or inside someone else's (a tarball unpacked in another repository) — None.
fn git_commit(manifest: &Path) -> Option<String> {
    let top = git(manifest, &["rev-parse", "--show-toplevel"])?;
    let same = match (Path::new(&top).canonicalize(), manifest.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return None;
    }
    // Rerun when HEAD moves (checkout) or the branch it names moves (commit). In a linked
    // worktree HEAD and the refs live in different directories: ask git for each path.
    let mut watch = vec![git(manifest, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(manifest, &["symbolic-ref", "-q", "HEAD"]) {
        watch.extend(git(manifest, &["rev-parse", "--git-path", &branch]));
    }
    // A packed ref (after `git gc`) moves in packed-refs.
    watch.extend(git(manifest, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watch {
        let path = manifest.join(path);
        // A missing file would make Cargo rerun the script on every build.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let commit = git(manifest, &["rev-parse", "--short=12", "HEAD"])?;
    commit
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(commit)
}

/// One git command's trimmed standard output, or None when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}
