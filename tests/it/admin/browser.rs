//! The status page in a real browser (issue 14): headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `tests/install-deps.sh` installs them)
//! after the sessions of `page` (a queued message, a bad login that locks its address
//! out). The page must show the account, the failing device and the queued message;
//! clicking "Retry" with the upstream back must make the message leave the queue.
//! Screenshots (English and 中文) go to `target/tmp/status-page-*.png`. Everything stays
//! on 127.0.0.1: chromedriver listens there, and Chromium runs with background
//! networking, component updates, sync and QUIC off.

use std::net::SocketAddr;
use std::process::Stdio;

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::queue::commands::queue_one;
use crate::smtp::{Client as SmtpClient, WAIT, WRONG};

/// Chromium's flags: headless, and nothing that reaches beyond loopback.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,1400",
];

fn find(program: &str, package: &str) -> String {
    for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
        let path = format!("{dir}/{program}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{program} not found: install the Debian package `{package}` (tests/install-deps.sh)");
}

/// A tiny WebDriver client: one HTTP/1.1 request per connection, JSON in and out.
struct Driver {
    addr: SocketAddr,
    session: String,
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = TcpStream::connect(addr)
        .await
        .expect("connect to chromedriver");
    tcp.write_all(req.as_bytes())
        .await
        .expect("send to chromedriver");
    // chromedriver may keep the connection open: read the head, then Content-Length bytes.
    let text = tokio::time::timeout(Duration::from_secs(60), read_answer(&mut tcp))
        .await
        .expect("chromedriver answered");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a <= b => &body[a..=b],
        _ => panic!("chromedriver {method} {path}: {head}\n{body}"),
    };
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(
        v["value"].get("error").is_none(),
        "chromedriver {method} {path}: {v}"
    );
    v["value"].clone()
}

/// One HTTP answer: the head, then its `Content-Length` body (or up to EOF).
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tcp.read(&mut chunk).await.expect("read chromedriver");
        bytes.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            if length.is_some_and(|len| body.len() >= len) {
                return text.into_owned();
            }
        }
        if n == 0 {
            return text.into_owned();
        }
    }
}

impl Driver {
    async fn open(addr: SocketAddr, chromium: &str, profile: &std::path::Path) -> Driver {
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = call(addr, "POST", "/session", Some(caps)).await;
        let session = v["sessionId"].as_str().expect("sessionId").to_string();
        Driver { addr, session }
    }

    async fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{what}", self.session);
        call(self.addr, method, &path, body).await
    }

    async fn visit(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("PNG");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    async fn click(&self, css: &str) {
        let el = self
            .cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("element id")
            .to_string();
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }
}

/// chromedriver, killed when dropped.
struct ChromeDriver(std::process::Child);

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on a free loopback port; waits for its "started" line.
async fn chromedriver() -> (ChromeDriver, SocketAddr) {
    use std::io::BufRead;
    let program = find("chromedriver", "chromium-driver");
    let port = crate::queue::unused_port().port();
    let mut child = std::process::Command::new(program)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("stdout");
    let driver = ChromeDriver(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Reads (and drains) its output on a thread of its own: a blocking pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("started successfully") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let started = tokio::time::timeout(Duration::from_secs(30), rx).await;
    assert!(matches!(started, Ok(Ok(()))), "chromedriver did not start");
    (driver, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_page_and_retry_empties_the_queue() {
    let started = std::time::Instant::now();
    let chromium = find("chromium", "chromium");
    let ca = TestCa::new("admin browser CA");
    let spool = tempfile::tempdir().unwrap();
    let upstream = crate::queue::unused_port();
    let b = crate::queue::queue_mode_builder(&ca, upstream, spool.path())
        .limit("lockout_failures", "1")
        .extra("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let proxy = Proxy::start_built(&b, &[]).await;
    let id = queue_one(&proxy, "browser test").await;
    let mut c = SmtpClient::connect(proxy.smtp_addr()).await;
    c.ehlo().await;
    let refused = c.auth_plain(crate::smtp::USER, WRONG).await;
    assert!(
        refused.starts_with("535") || refused.starts_with("421"),
        "{refused}"
    );
    drop(c);
    proxy.wait_for_log("\"result\":\"auth_failed\"", WAIT).await;

    let (_driver_process, addr) = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let web = Driver::open(addr, &chromium, profile.path()).await;
    let page = format!("http://{}/", proxy.admin_addr());
    web.visit(&page).await;
    let html = web.source().await;
    for needle in ["12345@qq.com", "device failing", "auth_failed", id.as_str()] {
        assert!(html.contains(needle), "{needle} not shown:\n{html}");
    }
    let shot = web.screenshot("status-page-en.png").await;
    web.visit(&format!("{page}?lang=zh")).await;
    assert!(web.source().await.contains("发送队列"));
    web.screenshot("status-page-zh.png").await;
    web.visit(&format!("{page}?lang=en")).await;

    // The upstream is back: "Retry" sends the message and the page stops listing it.
    let fake = FakeSmtp::start_on(
        std::net::TcpListener::bind(upstream).unwrap(),
        SmtpOptions::implicit(&ca),
    );
    web.click(&format!("tr#q-{id} form[action='/queue/retry'] button"))
        .await;
    // The click submits the form; the POST, its 303 and the page it leads to finish after
    // the click returns, so read the page until the notice is there (or WAIT passes).
    let deadline = std::time::Instant::now() + WAIT;
    while !web.source().await.contains("id=\"notice\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "a notice after the click"
        );
        tokio::task::yield_now().await;
    }
    fake.wait_messages(1, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        web.visit(&page).await;
        if !web.source().await.contains(id.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still listed after retry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    web.cmd("DELETE", "", None).await;
    eprintln!(
        "browser test: screenshot {} ({:?} in all)",
        shot.display(),
        started.elapsed()
    );
    proxy.assert_no_secret(&[DEFAULT_CODE, crate::smtp::PASSWORD]);
}
