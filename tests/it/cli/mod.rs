//! Command-line tests: the `qqmail-proxy` binary's subcommands run as a user would run
//! them. This file owns the runner for one-shot commands, the launcher for `serve` with
//! arguments of the test's choosing, and a `serve` whose config file the test rewrites
//! and reloads with SIGHUP (used by the hardening tests too); the tests live in the child
//! modules.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::support::config::{argon2_hash, ConfigBuilder};
use crate::support::proxy::{Launch, Proxy};

mod colour;
mod commands;
mod operator;
mod readme;
mod serve;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_qqmail-proxy");
/// Deadline for one command (hash-password runs argon2 with production parameters).
const DEADLINE: Duration = Duration::from_secs(60);
/// Deadline for any single wait on a running proxy.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a finished command left behind.
pub struct Ran {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl Ran {
    /// Panics with both streams unless the command exited 0.
    pub fn success(self) -> Ran {
        assert!(self.status.success(), "{}", self.describe());
        self
    }

    /// Panics with both streams unless the command exited non-zero.
    pub fn failure(self) -> Ran {
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "expected a failure exit: {}",
            self.describe()
        );
        self
    }

    fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `qqmail-proxy args...` to completion, without any inherited `QQMAIL_*` variable,
/// with `env` added, `stdin` (or an empty, closed stdin) and working directory `cwd`.
pub async fn cli(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>, cwd: &Path) -> Ran {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("QQMAIL_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let input = stdin.unwrap_or_default().to_vec();
    let what = format!("qqmail-proxy {}", args.join(" "));
    let task = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().expect("spawn qqmail-proxy");
        if let Some(mut pipe) = child.stdin.take() {
            let _ = pipe.write_all(&input);
        }
        child.wait_with_output().expect("wait for qqmail-proxy")
    });
    let out = match tokio::time::timeout(DEADLINE, task).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what} did not finish within {DEADLINE:?}"),
    };
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A [`Launch`] running exactly `qqmail-proxy --log-format json <args>`. The harness
/// always appends `serve --config <its file>`; `sh -c 'exec "$0" ...' BIN` runs the binary
/// in the shell's place (same pid, so signals reach it) and ignores those arguments.
pub fn launch_with_args(args: &[&str]) -> Launch {
    let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
    let script = format!("exec \"$0\" --log-format json {}", quoted.join(" "));
    Launch::new("").program("sh", &["-c", &script, BIN])
}

/// Single-quotes `s` for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The value after `key:` on the first stdout line that has it (e.g. `password:`).
pub fn value_after(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
}

/// Sends `signal` (e.g. `HUP`) to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A proxy started with `serve --config FILE` on a file the test rewrites, then reloads
/// with SIGHUP.
pub struct Reloadable {
    /// The running proxy.
    pub proxy: Proxy,
    path: PathBuf,
}

impl Reloadable {
    /// Writes `config` into the builder's directory and starts the proxy on it (with the
    /// builder's env and user names for the secret checks).
    pub async fn start(builder: &ConfigBuilder, config: &str) -> Reloadable {
        let path = builder.dir().join("config.toml");
        std::fs::write(&path, config).expect("write config");
        let path_arg = path.display().to_string();
        let env = builder.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut launch = launch_with_args(&["serve", "--config", &path_arg]).env(&env);
        launch.users = Launch::from_builder(builder).users;
        Reloadable {
            proxy: Proxy::launch(launch).await,
            path,
        }
    }

    /// Rewrites the config and sends SIGHUP; returns the log mark taken just before.
    pub fn hup(&self, config: &str) -> usize {
        std::fs::write(&self.path, config).expect("rewrite config");
        let mark = self.proxy.log_mark();
        signal(self.proxy.pid(), "HUP");
        mark
    }

    /// [`Reloadable::hup`], then waits until the reload is logged as done.
    pub async fn reload(&self, config: &str) {
        let mark = self.hup(config);
        self.proxy
            .wait_for_log_since(mark, "configuration reloaded", WAIT)
            .await;
    }
}

/// A `[[user]]` table to append to a config (argon2 with the test's cheap parameters).
pub fn user_toml(name: &str, password: &str, account: &str) -> String {
    format!(
        "\n[[user]]\nname = \"{name}\"\npassword_hash = \"{}\"\naccount = \"{account}\"\n",
        argon2_hash(password)
    )
}
