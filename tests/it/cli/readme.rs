//! Issue 19: the README's own commands, run as a new user would run them. Every ```sh
//! block of the "Quick start" and "Configuration" sections is read from README.md at test
//! time (so a changed README is what gets tested) and each line runs through the real
//! binary against a fake implicit-TLS upstream on 127.0.0.1; the output the README quotes
//! (the generated-login banner) is compared with what the binary prints. A command the
//! test neither runs nor allow-lists fails the test, so a new README command cannot go
//! untested.

use std::path::Path;

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{cli, launch_with_args, value_after, WAIT};
use crate::support::ca::TestCa;
use crate::support::proxy::Proxy;
use crate::support::smtp::{FakeSmtp, SmtpOptions, DEFAULT_CODE};

/// The sections whose command blocks are run.
const SECTIONS: [&str; 2] = ["## Quick start", "## Configuration"];

/// Command prefixes the test does not run, each with the reason.
const SKIPPED: [(&str, &str); 2] = [
    (
        "bash tests/run.sh",
        "runs the whole suite (this test included) and installs packages with apt-get",
    ),
    (
        "cargo install",
        "builds and installs into ~/.cargo/bin; the test runs the binary cargo built",
    ),
];

/// Quoted output blocks (identified by a line they contain) that no README command in
/// these sections prints, each with where it is checked instead.
const OTHER_OUTPUT: [(&str, &str); 1] = [(
    "qqmail-proxy: error: [[account]]",
    "errors of configs the README does not show; checked by `quoted_config_errors_are_true`",
)];

/// Quoted lines whose value differs on every run: the text up to and including the key
/// must match, the value must have the same length and be alphanumeric.
const VARIABLE_KEYS: [&str; 1] = ["password:"];

/// A fenced block of README.md.
struct Block {
    /// The `## ` heading it is under.
    section: String,
    /// The info string after the opening fence (`sh`, or empty).
    lang: String,
    /// Its lines, as written.
    lines: Vec<String>,
}

/// Every fenced block under one of [`SECTIONS`] (headings inside fences do not count).
fn blocks(readme: &str) -> Vec<Block> {
    let mut section = String::new();
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for line in readme.lines() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                out.extend(open.take());
            } else {
                block.lines.push(line.to_owned());
            }
        } else if let Some(lang) = line.trim_start().strip_prefix("```") {
            open = Some(Block {
                section: section.clone(),
                lang: lang.trim().to_owned(),
                lines: Vec::new(),
            });
        } else if line.starts_with("## ") {
            section = line.trim_end().to_owned();
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code fence");
    out.retain(|b| SECTIONS.contains(&b.section.as_str()));
    out
}

/// One README command line, split.
#[derive(Debug)]
struct Cmd {
    /// The line as written (comment included).
    line: String,
    /// Leading `VAR=value` assignments.
    env: Vec<(String, String)>,
    /// The arguments after the program (`qqmail-proxy` or `cargo run --release --`).
    args: Vec<String>,
    /// The trailing `# comment`, if any.
    comment: String,
}

/// What to do with a command line: run it, or skip it for an allow-listed reason.
enum Plan {
    /// Run the binary with these arguments.
    Run(Cmd),
    /// Allow-listed: not run here, for this reason.
    Skip(&'static str),
}

/// Splits a line the way `sh` would for the simple commands the README shows; anything
/// the test cannot split faithfully (quotes, `$`, pipes, redirections) fails loudly so
/// that the parser is extended rather than the command silently mis-run.
fn plan(line: &str) -> Plan {
    let (code, comment) = match line.find(" #") {
        Some(at) => (&line[..at], line[at + 2..].trim()),
        None => (line, ""),
    };
    assert!(
        !code.contains(['\'', '"', '`', '$', '|', '&', ';', '<', '>', '\\', '(']),
        "README command {line:?}: this test cannot run it as written; extend its parser"
    );
    let words: Vec<&str> = code.split_whitespace().collect();
    let assigns = words.iter().take_while(|w| is_assignment(w)).count();
    let rest = words[assigns..].join(" ");
    if let Some((_, why)) = SKIPPED.iter().find(|(p, _)| rest.starts_with(p)) {
        return Plan::Skip(why);
    }
    let args = ["cargo run --release --", "qqmail-proxy"]
        .iter()
        .find_map(|p| {
            let n = p.split(' ').count();
            (words.len() >= assigns + n && words[assigns..assigns + n].join(" ") == *p)
                .then(|| words[assigns + n..].iter().map(|w| w.to_string()).collect())
        })
        .unwrap_or_else(|| {
            panic!(
                "README command {line:?} is neither run by this test nor in its SKIPPED list \
                 (tests/it/cli/readme.rs): add it to one of them"
            )
        });
    let env = words[..assigns]
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Plan::Run(Cmd {
        line: line.to_owned(),
        env,
        args,
        comment: comment.to_owned(),
    })
}

/// `NAME=value` with a shell variable name.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The fake upstream every command is pointed at, and the variables that point there.
struct Upstream {
    smtp: FakeSmtp,
    _ca: TestCa,
    env: Vec<(String, String)>,
}

impl Upstream {
    fn start() -> Upstream {
        let ca = TestCa::new("readme CA");
        let smtp = FakeSmtp::start(SmtpOptions::implicit(&ca));
        let server = smtp.config_server();
        let mut env = vec![
            ("QQMAIL_SMTP_SERVER".to_owned(), server.clone()),
            // Nothing in these tests logs in over IMAP or POP3; aiming them at the fake
            // (on loopback) keeps even an accidental connection off the real servers.
            ("QQMAIL_IMAP_SERVER".to_owned(), server.clone()),
            ("QQMAIL_POP3_SERVER".to_owned(), server),
            (
                "QQMAIL_CA_FILE".to_owned(),
                ca.pem_path().display().to_string(),
            ),
        ];
        for protocol in ["SMTP", "IMAP", "POP3"] {
            env.push((
                format!("QQMAIL_{protocol}_LISTEN"),
                "127.0.0.1:0".to_owned(),
            ));
        }
        Upstream { smtp, _ca: ca, env }
    }
}

/// The README's variables, then the test's (which keep everything on 127.0.0.1:0).
fn env_of(cmd: &Cmd, upstream: &Upstream) -> Vec<(String, String)> {
    let mut env = cmd.env.clone();
    env.retain(|(k, _)| !upstream.env.iter().any(|(u, _)| u == k));
    env.extend(upstream.env.iter().cloned());
    env
}

/// What the commands of one block printed, and the local login they made known.
#[derive(Default)]
struct Seen {
    output: Vec<String>,
    user: Option<String>,
    password: Option<String>,
}

impl Seen {
    fn take(&mut self, stdout: &str, stderr: &str) {
        if let Some(password) = value_after(stdout, "password:") {
            self.user = value_after(stdout, "user:");
            self.password = Some(password);
        }
        self.output.extend(stdout.lines().map(str::to_owned));
        self.output.extend(stderr.lines().map(str::to_owned));
    }
}

/// Runs one README command in `cwd`: `serve` until ready, then a login and a message
/// through it, then SIGTERM; anything else to completion, which must exit 0.
async fn run(cmd: &Cmd, upstream: &Upstream, cwd: &Path, seen: &mut Seen) {
    let env = env_of(cmd, upstream);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    if !args.contains(&"serve") {
        let ran = cli(&args, &env, None, cwd).await;
        assert!(
            ran.status.success(),
            "README command {:?} exited {}:\n{}\n{}",
            cmd.line,
            ran.status,
            ran.stdout,
            ran.stderr
        );
        seen.take(&ran.stdout, &ran.stderr);
        return;
    }
    let proxy = Proxy::launch(launch_with_args(&args).env(&env).cwd(cwd)).await;
    for protocol in ["smtp", "imap", "pop3"] {
        assert_eq!(
            proxy.readiness().addrs(protocol).len(),
            1,
            "README command {:?}: no {protocol} listener",
            cmd.line
        );
    }
    if !cmd.args.iter().any(|a| a == "--config") {
        // The zero-config start prints its banner on stdout (read by its own thread).
        proxy.wait_for_stdout("password:", WAIT).await;
        // "generates a local STARTTLS certificate in `certs/`" (of the working directory).
        let cert = cwd.join("certs").join("local-cert.pem");
        assert!(cert.is_file(), "README command {:?}: no {cert:?}", cmd.line);
    }
    seen.take(&proxy.stdout(), "");
    send_through(&proxy, cmd, upstream, seen).await;
    let status = proxy.terminate().await;
    assert!(status.success(), "README command {:?}: {status}", cmd.line);
    seen.output.extend(proxy.logs().lines().map(str::to_owned));
    proxy.assert_no_secret(&[DEFAULT_CODE]);
}

/// "Point your printer or mail client at those ports with that user and password": one
/// message through the proxy with the login the block's commands printed, which must
/// reach the fake upstream with the README's authorization code.
async fn send_through(proxy: &Proxy, cmd: &Cmd, upstream: &Upstream, seen: &Seen) {
    let (Some(user), Some(password)) = (seen.user.clone(), seen.password.clone()) else {
        panic!(
            "README command {:?}: no local login (user:/password:) was printed",
            cmd.line
        )
    };
    let before = upstream.smtp.messages().len();
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(proxy.smtp_addr().port())
        .credentials(Credentials::new(user, password))
        .timeout(Some(WAIT))
        .build();
    let message = lettre::Message::builder()
        .from("scanner@printer.local".parse().expect("from"))
        .to("friend@example.com".parse().expect("to"))
        .subject("readme")
        .body("sent as the README says\n".to_string())
        .expect("message");
    if let Err(e) = mailer.send(message).await {
        panic!(
            "README command {:?}: sending with the printed login failed: {e}\n{}",
            cmd.line,
            proxy.logs()
        );
    }
    let got = upstream.smtp.wait_messages(before + 1, WAIT).await;
    let code = cmd.env.iter().find(|(k, _)| k == "QQMAIL_AUTH_CODE");
    assert_eq!(
        Some(got[before].auth_password.as_str()),
        code.map(|(_, v)| v.as_str()),
        "README command {:?}: the upstream did not get the README's code",
        cmd.line
    );
}

/// Checks what the comment after a command claims ("writes FILE").
fn check_comment(cmd: &Cmd, cwd: &Path) {
    if let Some(rest) = cmd.comment.strip_prefix("writes ") {
        let file = rest.split([',', ' ']).next().unwrap_or_default();
        assert!(
            cwd.join(file).is_file(),
            "README command {:?} says it writes {file}, which does not exist",
            cmd.line
        );
    }
}

/// Whether a quoted README line appears in `output` (see [`VARIABLE_KEYS`]).
fn printed(quoted: &str, output: &[String]) -> bool {
    let quoted = quoted.trim_end();
    let Some(key) = VARIABLE_KEYS.iter().find(|k| quoted.contains(*k)) else {
        return output.iter().any(|l| l.trim_end() == quoted);
    };
    let at = quoted.find(key).unwrap_or_default() + key.len();
    let (head, value) = (&quoted[..at], quoted[at..].trim());
    output.iter().any(|l| {
        l.strip_prefix(head).is_some_and(|v| {
            let v = v.trim();
            v.len() == value.len() && v.chars().all(|c| c.is_ascii_alphanumeric())
        })
    })
}

/// Every quoted output block of a section is printed by that section's commands (lines
/// `...` stand for the rest), unless listed in [`OTHER_OUTPUT`].
fn check_quoted(block: &Block, output: &[String]) {
    if block
        .lines
        .iter()
        .any(|l| OTHER_OUTPUT.iter().any(|(needle, _)| l.contains(needle)))
    {
        return;
    }
    for line in &block.lines {
        if line.trim() == "..." || line.trim().is_empty() {
            continue;
        }
        assert!(
            printed(line, output),
            "{}: the README quotes {line:?}, which its commands did not print:\n{}",
            block.section,
            output.join("\n")
        );
    }
}

/// Issue 19's README test: every command of the quick start and configuration sections
/// runs as written (in a fresh directory per block), and the output quoted there is true.
#[tokio::test]
async fn readme_commands_run_as_written() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let all = blocks(&readme);
    let upstream = Upstream::start();
    let mut ran = 0;
    for section in SECTIONS {
        let mut output = Vec::new();
        for block in all
            .iter()
            .filter(|b| b.section == section && b.lang == "sh")
        {
            let cwd = tempfile::tempdir().expect("cwd");
            if block
                .lines
                .iter()
                .any(|l| l.contains("config/example.toml"))
            {
                copy_dir(&repo_path("config"), &cwd.path().join("config"));
            }
            let mut seen = Seen::default();
            for line in block.lines.iter().filter(|l| !l.trim().is_empty()) {
                match plan(line) {
                    Plan::Run(cmd) => {
                        run(&cmd, &upstream, cwd.path(), &mut seen).await;
                        check_comment(&cmd, cwd.path());
                        ran += 1;
                    }
                    Plan::Skip(why) => eprintln!("README command {line:?} not run: {why}"),
                }
            }
            output.append(&mut seen.output);
        }
        for block in all
            .iter()
            .filter(|b| b.section == section && b.lang != "sh")
        {
            check_quoted(block, &output);
        }
    }
    assert!(
        ran >= 4,
        "only {ran} README commands ran: is the parser stale?"
    );
}

/// A path inside the repository.
fn repo_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Copies the files of `from` (one level) into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
        }
    }
}

/// The parser itself, as a table: lines run (with their arguments and variables),
/// skipped, or refused.
#[test]
fn readme_lines_are_planned_as_intended() {
    let cases: &[(&str, Option<&[&str]>, usize)] = &[
        ("A=1 cargo run --release -- serve", Some(&["serve"]), 1),
        (
            "qqmail-proxy init --email a@qq.com   # writes x",
            Some(&["init", "--email", "a@qq.com"]),
            0,
        ),
        ("bash tests/run.sh", None, 0),
        ("cargo install --path .", None, 0),
    ];
    for (line, args, vars) in cases {
        match (plan(line), args) {
            (Plan::Run(cmd), Some(args)) => {
                assert_eq!(cmd.args, *args, "{line}");
                assert_eq!(cmd.env.len(), *vars, "{line}");
            }
            (Plan::Skip(_), None) => {}
            _ => panic!("{line}: planned otherwise"),
        }
    }
    for refused in ["curl http://x", "qqmail-proxy serve | tee log"] {
        let caught = std::panic::catch_unwind(|| plan(refused));
        assert!(caught.is_err(), "{refused} was not refused");
    }
}

/// Configs that make the errors the configuration section quotes: (a text the quoted line
/// contains, the config file). Each runs `serve --config` without the code.
const ERROR_CONFIGS: [(&str, &str); 2] = [
    (
        "unknown provider",
        "[[account]]\nid = \"main\"\nemail = \"12345@qq.com\"\nprovider = \"qqq\"\n\
         auth_code_env = \"QQMAIL_AUTH_CODE\"\n",
    ),
    (
        "is not set",
        "[[account]]\nid = \"main\"\nemail = \"12345@qq.com\"\n\
         auth_code_env = \"QQMAIL_AUTH_CODE\"\n",
    ),
];

/// The start-up errors quoted under "Every mistake stops start-up with a message naming
/// the key and the fix" are what `serve` prints for such configs (a quoted line may end in
/// `...`: the rest is not compared).
#[tokio::test]
async fn quoted_config_errors_are_true() {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let quoted: Vec<String> = blocks(&readme)
        .into_iter()
        .filter(|b| b.lang != "sh" && b.lines.iter().any(|l| l.contains(OTHER_OUTPUT[0].0)))
        .flat_map(|b| b.lines)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        !quoted.is_empty(),
        "the README quotes no config error any more"
    );
    for line in &quoted {
        let (_, config) = ERROR_CONFIGS
            .iter()
            .find(|(needle, _)| line.contains(needle))
            .unwrap_or_else(|| panic!("no config in ERROR_CONFIGS makes {line:?}"));
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("c.toml"), config).expect("write config");
        let env = [("QQMAIL_SMTP_LISTEN", "127.0.0.1:0")];
        let ran = cli(&["serve", "--config", "c.toml"], &env, None, dir.path())
            .await
            .failure();
        let want = line.trim().trim_end_matches("...").trim_end();
        assert!(
            ran.stderr.lines().any(|l| l.trim().starts_with(want)),
            "the README quotes {line:?}; serve printed:\n{}",
            ran.stderr
        );
    }
}
