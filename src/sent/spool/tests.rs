//! Dot-stuffing undone in every chunking, the copy file's life, and its name.

use super::*;

/// Transmission form in -> the message the APPEND carries.
const CASES: &[(&[u8], &[u8])] = &[
    // The relay's form: ends with the `.` line.
    (b"a\r\n.\r\n", b"a\r\n"),
    (b"..lead\r\n.\r\n", b".lead\r\n"),
    (b"x\r\n...\r\n..\r\n.\r\n", b"x\r\n..\r\n.\r\n"),
    (b"a\r\n.\r\nafter\r\n", b"a\r\n"),
    (b".\r\n", b""),
    // The queue's form: stuffed, no `.` line, maybe no last CRLF.
    (b"a\r\n..b\r\n", b"a\r\n.b\r\n"),
    (b"a\r\n..b", b"a\r\n.b\r\n"),
    (b"a\r", b"a\r\r\n"),
    // A dot inside a line, bare LF and bare CR are not line starts.
    (b"a.b\r\nc\n.d\r\n.\r\n", b"a.b\r\nc\n.d\r\n"),
    (b"c\r.d\r\n.\r\n", b"c\r.d\r\n"),
    // `.` then a bare CR: the dot goes, the CR stays.
    (b"..\rx\r\n.\r\n", b".\rx\r\n"),
    (b".\rx\r\n.\r\n", b"\rx\r\n"),
    (b"a\r\n.\r", b"a\r\n\r\r\n"),
    (b"", b""),
];

#[test]
fn unstuffing_in_every_chunking() {
    for (input, want) in CASES {
        for chunk in 1..=input.len().clamp(1, 512) {
            let mut state = Unstuff::default();
            let mut out = Vec::new();
            for piece in input.chunks(chunk) {
                state.feed(piece, &mut out);
            }
            state.finish(&mut out);
            assert_eq!(
                out.escape_ascii().to_string(),
                want.escape_ascii().to_string(),
                "{} in chunks of {chunk}",
                input.escape_ascii()
            );
        }
    }
}

#[test]
fn file_names_carry_the_account() {
    for id in ["main", "a.b", "账户", ""] {
        let name = file_name(id);
        assert!(name.ends_with(".eml"), "{name}");
        assert_eq!(account_of(&name).as_deref(), Some(id), "{name}");
    }
    for other in [
        "x.eml",
        "6d61696e.eml",
        "6d61696e.0123.eml",
        "zz.0123456789abcdef.eml",
    ] {
        assert_eq!(account_of(other), None, "{other}");
    }
}

#[tokio::test]
async fn a_copy_is_private_and_removed_unless_finished() {
    let dir = tempfile::tempdir().unwrap();
    let mut copy = CopyFile::create(dir.path(), "main").await.unwrap();
    copy.push(b"Subject: x\r\n\r\n..a\r\n.\r").await.unwrap();
    copy.push(b"\n").await.unwrap();
    let written = copy.finish().await.unwrap();
    let want = b"Subject: x\r\n\r\n.a\r\n";
    assert_eq!(std::fs::read(&written.path).unwrap(), want);
    assert_eq!(written.size, want.len() as u64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&written.path), 0o600);
        assert_eq!(mode(&dir.path().join(DIR)), 0o700);
    }
    let abandoned = CopyFile::create(dir.path(), "main").await.unwrap();
    let path = abandoned.path.clone();
    assert!(path.exists());
    drop(abandoned);
    assert!(!path.exists(), "an unfinished copy leaves no file");
    assert!(written.path.exists(), "a finished one stays for its APPEND");
}
