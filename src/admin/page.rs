//! The status page as HTML, rendered on the server from a [`Status`]: no template files,
//! no external assets, no script (forms post and the server redirects back). Every
//! value passes through [`esc`] on its way in, whatever its source: account ids, upstream
//! replies (bytes a server chose) and queue addresses are all someone else's text.

use std::fmt::Write as _;

use super::i18n::{Lang, Words};
use super::status::{CheckView, QueueView, Security, Status};

mod activity;

/// HTML-escapes `s` for text and for double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70em;\
padding:1em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;\
border-bottom:1px solid #ccc}table{border-collapse:collapse;width:100%}th,td{text-align:left;\
padding:.3em .5em;border-bottom:1px solid #eee;vertical-align:top}th{background:#f5f5f5}\
.err{color:#a00}.ok{color:#070}.hint{color:#555;font-size:.9em}.notice{background:#ffd;\
padding:.5em;border:1px solid #ee8}form.inline{display:inline}button{cursor:pointer}\
nav{float:right}code{font-size:.95em}";

/// A whole page: `<head>`, the language switch, a notice, and `body`.
fn layout(lang: Lang, notice: Option<&str>, logout: Option<&str>, body: &str) -> String {
    let w = lang.words();
    let mut out = String::with_capacity(body.len() + 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><nav>\
         <a href=\"?lang=en\">English</a> · <a href=\"?lang=zh\">中文</a>",
        lang.code(),
        esc(w.title)
    );
    if let Some(csrf) = logout {
        let _ = write!(out, " · {}", post_button("/logout", csrf, &[], w.logout));
    }
    let _ = write!(out, "</nav><h1>{}</h1>", esc(w.title));
    if let Some(n) = notice {
        let _ = write!(out, "<p class=\"notice\" id=\"notice\">{}</p>", esc(n));
    }
    out.push_str(body);
    out.push_str("</body></html>");
    out
}

/// A one-button form posting `fields` and the CSRF token to `action`.
fn post_button(action: &str, csrf: &str, fields: &[(&str, &str)], label: &str) -> String {
    let mut out = format!(
        "<form class=\"inline\" method=\"post\" action=\"{}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(action),
        esc(csrf)
    );
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(
        out,
        "<button type=\"submit\">{}</button></form>",
        esc(label)
    );
    out
}

/// The login form.
pub fn login(lang: Lang, csrf: &str, notice: Option<&str>) -> String {
    let w = lang.words();
    let body = format!(
        "<p>{}</p><form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>{} <input type=\"password\" name=\"password\" autocomplete=\"current-password\" \
         autofocus></label> <button type=\"submit\">{}</button></form>",
        esc(w.login_needed),
        esc(csrf),
        esc(w.password),
        esc(w.login)
    );
    layout(lang, notice, None, &body)
}

/// The status page. `logout` is the CSRF token when the visitor logged in (so the page
/// offers to log out).
pub fn status(s: &Status, lang: Lang, csrf: &str, notice: Option<&str>, view: PageView) -> String {
    let w = lang.words();
    let mut body = String::new();
    accounts(&mut body, s, w, csrf);
    activity::devices(&mut body, &s.activity, w);
    lockouts(&mut body, s, w, csrf);
    queue(&mut body, s.queue.as_ref(), w, csrf);
    activity::chart(&mut body, &s.activity.hourly, w);
    activity::recent(&mut body, &s.activity, w, view.failures_only);
    listeners(&mut body, s, w);
    let _ = write!(
        body,
        "<p class=\"hint\">qqmail-proxy {} · <a href=\"/api/status\">JSON</a></p>",
        esc(s.version)
    );
    layout(lang, notice, view.logged_in.then_some(csrf), &body)
}

/// How the visitor asked for the page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageView {
    /// Logged in with the password (the page offers to log out).
    pub logged_in: bool,
    /// `?failures=1`: the recent activity shows failures only.
    pub failures_only: bool,
}

fn accounts(out: &mut String, s: &Status, w: &Words, csrf: &str) {
    let _ = write!(
        out,
        "<h2 id=\"accounts\">{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(w.accounts),
        esc(w.address),
        esc(w.provider),
        esc(w.servers),
        esc(w.last_login)
    );
    for a in &s.accounts {
        let servers: Vec<String> = a
            .servers
            .iter()
            .map(|r| format!("{} <code>{}</code>", esc(r.protocol), esc(&r.server)))
            .collect();
        let last = activity::logins(&a.last_logins, w);
        let _ = write!(
            out,
            "<tr class=\"account\"><td>{}</td><td>{}</td><td>{}</td><td>{last}</td></tr>",
            esc(&a.address),
            esc(a.provider),
            servers.join("<br>")
        );
    }
    out.push_str("</table><p>");
    out.push_str(&post_button("/check", csrf, &[], w.check_now));
    out.push_str("</p>");
    if let Some(c) = &s.last_check {
        check(out, c, w);
    }
}

fn check(out: &mut String, c: &CheckView, w: &Words) {
    let _ = write!(out, "<p>{}:</p><table id=\"check\">", esc(w.check_result));
    for l in &c.lines {
        let class = if l.ok { "ok" } else { "err" };
        let text = l.text.as_str();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"{class}\">{}</td></tr>",
            esc(&l.account),
            esc(l.service),
            esc(&l.server),
            esc(text)
        );
    }
    out.push_str("</table>");
}

fn security(w: &Words, s: Security) -> &'static str {
    match s {
        Security::Plain => w.plain,
        Security::Starttls => w.starttls,
        Security::StarttlsRequired => w.starttls_required,
        Security::ImplicitTls => w.implicit_tls,
        Security::Auto => w.auto,
    }
}

fn listeners(out: &mut String, s: &Status, w: &Words) {
    let _ = write!(
        out,
        "<h2 id=\"listeners\">{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(w.listeners),
        esc(w.protocol),
        esc(w.address),
        esc(w.security),
        esc(w.min_tls)
    );
    for l in &s.listeners {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&l.protocol.to_uppercase()),
            esc(&l.address),
            esc(security(w, l.security)),
            l.min_tls
                .map_or("—".to_string(), |v| format!("TLS {}", esc(v)))
        );
    }
    out.push_str("</table>");
}

/// `90` → `1m 30s`.
fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn lockouts(out: &mut String, s: &Status, w: &Words, csrf: &str) {
    let _ = write!(out, "<h2 id=\"lockouts\">{}</h2>", esc(w.lockouts));
    if s.lockouts.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(w.no_lockouts));
        return;
    }
    let _ = write!(
        out,
        "<table><tr><th>{}</th><th>{}</th><th></th></tr>",
        esc(w.host),
        esc(w.time_left)
    );
    for l in &s.lockouts {
        let _ = write!(
            out,
            "<tr class=\"lockout\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&l.host),
            span(l.seconds_left),
            post_button("/unlock", csrf, &[("host", &l.host)], w.unlock)
        );
    }
    out.push_str("</table>");
}

fn queue(out: &mut String, q: Option<&QueueView>, w: &Words, csrf: &str) {
    let _ = write!(out, "<h2 id=\"queue\">{}</h2>", esc(w.queue));
    let Some(q) = q else {
        let _ = write!(out, "<p>{}</p>", esc(w.queue_off));
        return;
    };
    if let Some(e) = &q.error {
        let _ = write!(out, "<p class=\"err\">{}</p>", esc(e));
    }
    let messages = q.messages.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if messages.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(w.queue_empty));
        return;
    }
    let _ = write!(
        out,
        "<p>{}</p><table><tr><th>ID</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
         <th>{}</th><th>{}</th><th></th></tr>",
        post_button("/queue/retry", csrf, &[("all", "1")], w.retry_all),
        esc(w.age),
        esc(w.size),
        esc(w.recipients),
        esc(w.attempts),
        esc(w.last_error),
        esc(w.next_attempt)
    );
    for m in messages {
        message(out, m, w, csrf);
    }
    out.push_str("</table>");
}

fn message(out: &mut String, m: &serde_json::Value, w: &Words, csrf: &str) {
    let text = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let num = |k: &str| m.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let id = text("id");
    let rcpts: Vec<String> = m
        .get("recipients")
        .and_then(|r| r.as_array())
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            let addr = r.get("address").and_then(|v| v.as_str()).unwrap_or("");
            let state = r.get("state").and_then(|v| v.as_str()).unwrap_or("");
            format!("{} <span class=\"hint\">({})</span>", esc(addr), esc(state))
        })
        .collect();
    let error = m
        .get("last_error")
        .and_then(|e| e.get("text"))
        .and_then(|t| t.as_str())
        .map_or(String::new(), |t| {
            format!("<code class=\"err\">{}</code>", esc(t))
        });
    let hint = m
        .get("hint")
        .and_then(|h| h.as_str())
        .map_or(String::new(), |h| {
            format!("<br><span class=\"hint\">{}</span>", esc(h))
        });
    let _ = write!(
        out,
        "<tr class=\"queued\" id=\"q-{id}\"><td><code>{id}</code></td><td>{}</td><td>{} B</td>\
         <td>{}</td><td>{}</td><td>{error}{hint}</td><td>{}</td><td>{} {}</td></tr>",
        span(num("age_seconds")),
        num("size"),
        rcpts.join("<br>"),
        num("attempts"),
        span(num("next_attempt_in_seconds")),
        post_button("/queue/retry", csrf, &[("id", id)], w.retry),
        post_button("/queue/delete", csrf, &[("id", id)], w.delete),
        id = esc(id),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let cases = [
            ("plain", "plain"),
            ("<script>", "&lt;script&gt;"),
            ("a&b", "a&amp;b"),
            ("\"x\" 'y'", "&quot;x&quot; &#39;y&#39;"),
            ("中文 <b>", "中文 &lt;b&gt;"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), want, "{input:?}");
        }
    }

    #[test]
    fn spans() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (90, "1m 30s"),
            (3600, "1h 0m"),
            (7322, "2h 2m"),
        ];
        for (secs, want) in cases {
            assert_eq!(span(secs), want, "{secs}");
        }
    }

    #[test]
    fn foreign_text_is_escaped_everywhere() {
        let evil = "<img src=x onerror=alert(1)>";
        let q = QueueView {
            messages: serde_json::json!([{
                "id": evil, "age_seconds": 5, "size": 10, "attempts": 1,
                "next_attempt_in_seconds": 60,
                "recipients": [{"address": evil, "state": "pending"}],
                "last_error": {"class": "temporary", "text": evil},
                "hint": evil,
            }]),
            error: Some(evil.to_string()),
        };
        let mut out = String::new();
        queue(&mut out, Some(&q), Lang::En.words(), evil);
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;img"), "{out}");
    }
}
