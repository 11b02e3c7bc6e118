//! A handle on the `qqmail-proxy` process: launch with a config in a tempdir, wait for the
//! JSON `listening`/`ready` log lines, read listener addresses, collect and search its logs,
//! stop it, and check that no secret leaked into its output.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::watch;

use super::config::ConfigBuilder;

mod events;
pub mod json;

pub use events::{parse_log_line, LogEvent, Readiness};

/// How long `start` waits for `ready` (and `start_expect_failure` for the exit).
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long `terminate` waits for the exit after SIGTERM.
pub const TERM_DEADLINE: Duration = Duration::from_secs(10);

/// How to launch the proxy: config text, env, and extra arguments.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The TOML written to `config.toml`.
    pub config: String,
    /// Extra env vars (the child inherits the test's env, with `RUST_LOG=trace`).
    pub env: Vec<(String, String)>,
    /// Args before the subcommand, after `--log-format json`.
    pub global_args: Vec<String>,
    /// Args after `serve --config <path>`.
    pub serve_args: Vec<String>,
    /// User names for the PLAIN-blob forms `assert_no_secret` looks for.
    pub users: Vec<String>,
    /// A stand-in program and its leading args instead of the proxy binary (for testing
    /// the harness itself); the usual args follow them.
    pub program: Option<(String, Vec<String>)>,
    /// The working directory (default: the test's own).
    pub cwd: Option<std::path::PathBuf>,
}

impl Launch {
    /// A launch of `config`.
    pub fn new(config: &str) -> Launch {
        Launch {
            config: config.to_owned(),
            ..Launch::default()
        }
    }

    /// A launch of a builder's config with its env (code vars) and user and account names.
    pub fn from_builder(builder: &ConfigBuilder) -> Launch {
        let mut users: Vec<String> = builder.users().iter().map(|u| u.name.clone()).collect();
        users.extend(builder.accounts().iter().map(|a| a.email.clone()));
        Launch {
            config: builder.build(),
            env: builder.env(),
            users,
            ..Launch::default()
        }
    }

    /// Adds env vars.
    pub fn env(mut self, vars: &[(&str, &str)]) -> Self {
        self.env
            .extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Adds args before the subcommand.
    pub fn global_args(mut self, args: &[&str]) -> Self {
        self.global_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Adds args after `serve --config <path>`.
    pub fn serve_args(mut self, args: &[&str]) -> Self {
        self.serve_args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Runs the proxy in `dir` instead of the test's working directory.
    pub fn cwd(mut self, dir: &std::path::Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Runs `program pre_args... <usual args>` instead of the proxy binary.
    pub fn program(mut self, program: &str, pre_args: &[&str]) -> Self {
        let pre = pre_args.iter().map(|a| (*a).to_owned()).collect();
        self.program = Some((program.to_owned(), pre));
        self
    }
}

#[derive(Default)]
struct Inner {
    stderr: Vec<String>,
    stdout: Vec<String>,
    readiness: Readiness,
    exit: Option<ExitStatus>,
    stderr_done: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Bumped on every line and on exit; waiters need no sleeps.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.changed.send_modify(|g| *g += 1);
    }
}

/// The running proxy. Dropping it kills the process; if the test is panicking, the
/// tempdir (config, `stderr.log`) is kept and the log's tail printed.
pub struct Proxy {
    pid: u32,
    shared: Arc<Shared>,
    dir: Option<tempfile::TempDir>,
    users: Vec<String>,
}

impl Proxy {
    /// Starts `qqmail-proxy --log-format json serve --config <tmp>/config.toml` and waits
    /// (30 s at most) for its `ready` line; panics with the log if it exits or times out.
    pub async fn start(config_toml: &str, env: &[(&str, &str)]) -> Proxy {
        Proxy::launch(Launch::new(config_toml).env(env)).await
    }

    /// [`Proxy::start`] with a builder's config and env, plus `extra_env`.
    pub async fn start_built(builder: &ConfigBuilder, extra_env: &[(&str, &str)]) -> Proxy {
        Proxy::launch(Launch::from_builder(builder).env(extra_env)).await
    }

    /// [`Proxy::start`] with extra args after `serve --config <path>`.
    pub async fn start_with_args(config_toml: &str, env: &[(&str, &str)], args: &[&str]) -> Proxy {
        Proxy::launch(Launch::new(config_toml).env(env).serve_args(args)).await
    }

    /// Launches and waits for `ready`.
    pub async fn launch(launch: Launch) -> Proxy {
        let proxy = Proxy::spawn(launch);
        if let Err(failure) = proxy.wait_ready().await {
            // The message carries the whole log: drop the proxy (and its tempdir) first.
            drop(proxy);
            panic!("{failure}");
        }
        proxy
    }

    /// Starts the proxy expecting a config error: waits for it to exit, panics if it exits
    /// 0 or reports `ready`, and returns its status and stderr.
    pub async fn start_expect_failure(
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> (ExitStatus, String) {
        Proxy::launch_expect_failure(Launch::new(config_toml).env(env)).await
    }

    /// [`Proxy::start_expect_failure`] for a full [`Launch`].
    pub async fn launch_expect_failure(launch: Launch) -> (ExitStatus, String) {
        let proxy = Proxy::spawn(launch);
        proxy
            .wait("the proxy to exit", START_DEADLINE, |i| {
                assert!(
                    !i.readiness.ready,
                    "the proxy became ready but was expected to fail"
                );
                i.exit.is_some() && i.stderr_done
            })
            .await;
        let status = proxy.shared.lock().exit.expect("exit status");
        let logs = proxy.logs();
        assert!(
            !status.success(),
            "the proxy exited 0 but was expected to fail:\n{logs}"
        );
        (status, logs)
    }

    fn spawn(launch: Launch) -> Proxy {
        let dir = tempfile::tempdir().expect("proxy tempdir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, &launch.config).expect("write config");
        let (program, mut args): (OsString, Vec<OsString>) = match &launch.program {
            Some((program, pre)) => (program.into(), pre.iter().map(OsString::from).collect()),
            None => (env!("CARGO_BIN_EXE_qqmail-proxy").into(), Vec::new()),
        };
        args.extend(["--log-format".into(), "json".into()]);
        args.extend(launch.global_args.iter().map(OsString::from));
        args.extend([
            "serve".into(),
            "--config".into(),
            config_path.into_os_string(),
        ]);
        args.extend(launch.serve_args.iter().map(OsString::from));
        let mut command = Command::new(program);
        if let Some(cwd) = &launch.cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(&args)
            .env("RUST_LOG", "trace")
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn qqmail-proxy");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        });
        let stderr = child.stderr.take().expect("stderr pipe");
        let stdout = child.stdout.take().expect("stdout pipe");
        let tee = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log");
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            read_lines(stderr, Some(tee), |line| {
                s.update(|i| {
                    i.readiness.ingest(&line);
                    i.stderr.push(line);
                })
            });
            s.update(|i| i.stderr_done = true);
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || read_lines(stdout, None, |l| s.update(|i| i.stdout.push(l))));
        let pid = child.id();
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                s.update(|i| i.exit = Some(status));
            }
        });
        Proxy {
            pid,
            shared,
            dir: Some(dir),
            users: launch.users,
        }
    }

    async fn wait_ready(&self) -> Result<(), String> {
        // On an early exit, also wait for stderr's EOF so the failure shows the whole log.
        self.wait("the `ready` log line", START_DEADLINE, |i| {
            i.readiness.ready || (i.exit.is_some() && i.stderr_done)
        })
        .await;
        let inner = self.shared.lock();
        match (inner.readiness.ready, inner.exit) {
            (false, Some(status)) => Err(format!(
                "the proxy exited ({status}) before `ready`:\n{}",
                inner.stderr.join("\n")
            )),
            _ => Ok(()),
        }
    }

    /// Waits until `pred` holds on the collected state; panics with the log on timeout.
    async fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&Inner) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if pred(&self.shared.lock()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        if waited.is_err() {
            panic!(
                "timed out after {timeout:?} waiting for {what}; proxy log:\n{}",
                self.logs()
            );
        }
    }

    /// The directory holding `config.toml` (and `stderr.log`).
    pub fn config_dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("the proxy's tempdir").path()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the readiness lines announced.
    pub fn readiness(&self) -> Readiness {
        self.shared.lock().readiness.clone()
    }

    fn addr(&self, protocol: &str) -> SocketAddr {
        match self.readiness().addrs(protocol).first() {
            Some(addr) => *addr,
            None => panic!(
                "the proxy announced no `{protocol}` listener (is its section in the config?); log:\n{}",
                self.logs()
            ),
        }
    }

    /// The first SMTP listener; panics if none was announced.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.addr("smtp")
    }

    /// The first IMAP listener; panics if none was announced.
    pub fn imap_addr(&self) -> SocketAddr {
        self.addr("imap")
    }

    /// The first POP3 listener; panics if none was announced.
    pub fn pop3_addr(&self) -> SocketAddr {
        self.addr("pop3")
    }

    /// The admin listener; panics if none was announced.
    pub fn admin_addr(&self) -> SocketAddr {
        self.addr("admin")
    }

    /// Every stderr line so far, joined with `\n`.
    pub fn logs(&self) -> String {
        self.shared.lock().stderr.join("\n")
    }

    /// Every stdout line so far, joined with `\n`.
    pub fn stdout(&self) -> String {
        self.shared.lock().stdout.join("\n")
    }

    /// Every stderr line that parses as a JSON event.
    pub fn events(&self) -> Vec<LogEvent> {
        let inner = self.shared.lock();
        inner
            .stderr
            .iter()
            .filter_map(|l| parse_log_line(l))
            .collect()
    }

    /// The number of stderr lines so far, to pass to [`Proxy::wait_for_log_since`].
    pub fn log_mark(&self) -> usize {
        self.shared.lock().stderr.len()
    }

    /// Waits for a stderr line containing `needle`, returning it; panics with the log on
    /// timeout.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_since(0, needle, timeout).await
    }

    /// Like [`Proxy::wait_for_log`], looking only at lines from index `mark` on.
    pub async fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(|i| &i.stderr, mark, needle, timeout)
            .await
    }

    /// Waits for a stdout line containing `needle` (stdout is read by its own thread, so
    /// it may lag behind stderr).
    pub async fn wait_for_stdout(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(|i| &i.stdout, 0, needle, timeout).await
    }

    async fn wait_for_line(
        &self,
        stream: fn(&Inner) -> &Vec<String>,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> String {
        let find = |i: &Inner| {
            let lines = stream(i).get(mark..).unwrap_or_default();
            lines.iter().find(|l| l.contains(needle)).cloned()
        };
        let what = format!("an output line containing {needle:?}");
        self.wait(&what, timeout, |i| find(i).is_some()).await;
        find(&self.shared.lock()).expect("line present")
    }

    /// Sends SIGTERM (`kill -TERM <pid>`) and waits (10 s at most) for the exit.
    pub async fn terminate(&self) -> ExitStatus {
        if self.shared.lock().exit.is_none() {
            let sent = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status()
                .expect("run kill");
            assert!(sent.success(), "kill -TERM {} failed", self.pid);
        }
        self.wait("the exit after SIGTERM", TERM_DEADLINE, |i| {
            i.exit.is_some()
        })
        .await;
        self.shared.lock().exit.expect("exit status")
    }

    /// Sends SIGKILL (`kill -KILL <pid>`): a crash at this very instant, with no chance to
    /// flush or clean up; waits (10 s at most) for the exit. A new [`Proxy`] started on
    /// the same config (same `state_dir`, same `[queue] dir`) is the restart.
    pub async fn kill(&self) -> ExitStatus {
        if self.shared.lock().exit.is_none() {
            let sent = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status()
                .expect("run kill");
            assert!(sent.success(), "kill -KILL {} failed", self.pid);
        }
        self.wait("the exit after SIGKILL", TERM_DEADLINE, |i| {
            i.exit.is_some()
        })
        .await;
        self.shared.lock().exit.expect("exit status")
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.lock().exit
    }

    /// Asserts that no secret appears in stdout or stderr: neither in clear, nor as a
    /// decimal byte list (`{:?}` of bytes), nor in standard base64 at any of the three byte
    /// alignments (which covers a bare base64 secret and any SASL PLAIN blob
    /// `authzid\0user\0secret`), nor as the PLAIN blobs of the known users. The failure
    /// message names the secret's index and the line, never the secret.
    pub fn assert_no_secret(&self, secrets: &[&str]) {
        self.assert_no_secret_for(secrets, &[]);
    }

    /// [`Proxy::assert_no_secret`] with extra user names for the PLAIN-blob forms.
    pub fn assert_no_secret_for(&self, secrets: &[&str], users: &[&str]) {
        let mut all_users: Vec<&str> = self.users.iter().map(String::as_str).collect();
        all_users.extend_from_slice(users);
        let inner = self.shared.lock();
        let streams = [("stderr", &inner.stderr), ("stdout", &inner.stdout)];
        for (index, secret) in secrets.iter().enumerate() {
            let forms = secret_forms(secret, &all_users);
            for (stream, lines) in streams {
                for (n, line) in lines.iter().enumerate() {
                    if let Some((form, _)) = forms.iter().find(|(_, f)| line.contains(f.as_str())) {
                        panic!(
                            "secret #{index} ({} chars) leaked into proxy {stream} line {} as {form}",
                            secret.len(),
                            n + 1
                        );
                    }
                }
            }
        }
    }
}

/// The encoded forms of `secret` that must not appear in logs, each with a description.
pub fn secret_forms(secret: &str, users: &[&str]) -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes = secret.as_bytes();
    let mut forms = vec![("clear text".to_owned(), secret.to_owned())];
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    if bytes.len() >= 4 {
        forms.push(("a decimal byte list".to_owned(), list.join(", ")));
    }
    // Base64 maps 3 bytes to 4 chars; at offset k the characters drawn only from the
    // secret's bits are those whose 6 bits start at or after bit 8k and end by bit 8(k+len).
    for k in 0..3usize {
        let mut padded = vec![0u8; k];
        padded.extend_from_slice(bytes);
        let enc = b64.encode(&padded);
        let first = (8 * k).div_ceil(6);
        let last = (8 * (k + bytes.len())) / 6;
        if let Some(core) = enc.get(first..last).filter(|c| c.len() >= 4) {
            forms.push((format!("base64 (alignment {k})"), core.to_owned()));
        }
    }
    for user in users {
        for blob in [
            format!("\0{user}\0{secret}"),
            format!("{user}\0{user}\0{secret}"),
        ] {
            forms.push((format!("a PLAIN blob for user {user:?}"), b64.encode(blob)));
        }
    }
    forms
}

/// Reads `\n`-terminated lines (lossy UTF-8, terminator stripped) until EOF or error.
fn read_lines(
    pipe: impl std::io::Read,
    mut tee: Option<std::fs::File>,
    mut each: impl FnMut(String),
) {
    let mut reader = std::io::BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(file) = tee.as_mut() {
            let _ = file.write_all(&buf);
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        each(String::from_utf8_lossy(line).into_owned());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.shared.lock().exit.is_none() {
            // The waiter thread owns the Child, so signal by pid. The only window for pid
            // reuse is between the waiter reaping the child and recording its exit.
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                let inner = self.shared.lock();
                let tail = inner.stderr.len().saturating_sub(200);
                eprintln!(
                    "--- qqmail-proxy log tail (full log and config kept in {}) ---\n{}",
                    path.display(),
                    inner.stderr.get(tail..).unwrap_or_default().join("\n")
                );
            }
        }
    }
}
