//! The trust rule as a table, and the files it judges on disk.

use super::*;

#[test]
fn rule_table() {
    const ME: u32 = 1000;
    let cases = [
        // (mode, owner) -> verdict
        ((0o700, ME), Verdict::Trusted),
        ((0o600, ME), Verdict::Trusted),
        ((0o755, ME), Verdict::Trusted),
        ((0o644, 0), Verdict::Trusted),
        ((0o444, 0), Verdict::Trusted),
        ((0o770, ME), Verdict::Writable("group")),
        ((0o702, ME), Verdict::Writable("others")),
        ((0o777, ME), Verdict::Writable("group and others")),
        ((0o666, 0), Verdict::Writable("group and others")),
        // Writable beats a foreign owner: it is the easier attack, and the first fix.
        ((0o622, 65534), Verdict::Writable("group and others")),
        ((0o600, 65534), Verdict::ForeignOwner),
        ((0o700, 1001), Verdict::ForeignOwner),
    ];
    for ((mode, owner), want) in cases {
        assert_eq!(judge(mode, owner, ME), want, "mode {mode:o} owner {owner}");
    }
    // Running as root, only root's files are trusted.
    assert_eq!(judge(0o600, 0, 0), Verdict::Trusted);
    assert_eq!(judge(0o600, 1000, 0), Verdict::ForeignOwner);
}

#[cfg(unix)]
#[test]
fn checks_files_on_disk_and_names_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let set = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let missing = dir.path().join("missing");
    assert!(
        check(&missing, Kind::PrivateFile).is_ok(),
        "absent is trusted"
    );

    let file = dir.path().join("local-users");
    std::fs::write(&file, "x").expect("write");
    set(&file, 0o600);
    assert!(check(&file, Kind::PrivateFile).is_ok());
    let cases = [
        (
            0o620,
            Kind::PrivateFile,
            "chmod 600",
            "writable by group (mode 620)",
        ),
        (
            0o646,
            Kind::SharedFile,
            "chmod go-w",
            "writable by others (mode 646)",
        ),
    ];
    for (mode, kind, fix, what) in cases {
        set(&file, mode);
        let text = check(&file, kind).expect_err("refused").to_string();
        let path = file.display().to_string();
        for needle in [path.as_str(), fix, what] {
            assert!(text.contains(needle), "{needle:?} missing in {text:?}");
        }
        assert!(text.contains(&format!("`{fix} {path}`")), "{text}");
    }

    let sub = dir.path().join("a/b/state");
    create_private_dir(&sub).expect("create");
    for p in [dir.path().join("a"), dir.path().join("a/b"), sub.clone()] {
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} mode {mode:o}", p.display());
    }
    assert!(check(&sub, Kind::PrivateDir).is_ok());
    set(&sub, 0o777);
    let text = check(&sub, Kind::PrivateDir)
        .expect_err("refused")
        .to_string();
    assert!(
        text.contains(&format!("`chmod 700 {}`", sub.display())),
        "{text}"
    );
    // An existing directory keeps its mode: the check, not the creation, judges it.
    create_private_dir(&sub).expect("exists");
    assert!(check(&sub, Kind::PrivateDir).is_err());
}
