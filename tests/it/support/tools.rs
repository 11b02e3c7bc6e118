//! Outside programs the tests drive (python3, curl, swaks): a missing one fails the test
//! with the package to install, never a silent skip.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// Finds `program` on PATH, or panics naming the Debian package that provides it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{program}`: install it with `apt-get install -y --no-install-recommends {package}` \
         (the README's test command does this)"
    );
}

/// Runs a program to completion on a blocking thread with a deadline, capturing output.
pub async fn run(
    program: PathBuf,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    deadline: Duration,
) -> Output {
    let name = program.display().to_string();
    let task = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(&input);
        }
        child.wait_with_output().expect("waiting for the child")
    });
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{name} panicked: {e}"),
        Err(_) => panic!("{name} did not finish within {deadline:?}"),
    }
}

/// Runs a Python 3 script given inline, with arguments.
pub async fn python(script: &str, args: &[String], deadline: Duration) -> Output {
    let python = require("python3", "python3");
    let mut all = vec!["-c".to_string(), script.to_string()];
    all.extend(args.iter().cloned());
    run(python, all, None, deadline).await
}
