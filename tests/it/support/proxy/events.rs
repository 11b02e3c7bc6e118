//! The proxy's JSON log lines as events, and the readiness contract read from them: one
//! `listening` line (fields `protocol`, `addr`) per bound listener, then `ready`.

use std::net::SocketAddr;

use super::json;

/// One parsed JSON log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// `level`, e.g. `INFO`.
    pub level: Option<String>,
    /// `target`, e.g. `qqmail_proxy::server`.
    pub target: Option<String>,
    /// The event's fields (`message` included) as text: from the `fields` object, or the
    /// top level when the subscriber flattens events.
    pub fields: Vec<(String, String)>,
}

impl LogEvent {
    /// The field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `message` field.
    pub fn message(&self) -> Option<&str> {
        self.field("message")
    }
}

/// Parses a tracing-subscriber JSON line; `None` for anything else (a panic message, say).
/// Field order does not matter; span fields (`span`, `spans`) are never mistaken for the
/// event's own.
pub fn parse_log_line(line: &str) -> Option<LogEvent> {
    let top = json::parse(line)?;
    let json::Json::Obj(members) = &top else {
        return None;
    };
    let text = |key: &str| {
        top.get(key)
            .and_then(json::Json::as_text)
            .map(str::to_owned)
    };
    let source = match top.get("fields") {
        Some(json::Json::Obj(fields)) => fields,
        _ => members,
    };
    let fields = source
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "span" | "spans" | "fields"))
        .filter_map(|(k, v)| Some((k.clone(), v.as_text()?.to_owned())))
        .collect();
    Some(LogEvent {
        level: text("level"),
        target: text("target"),
        fields,
    })
}

/// What the readiness lines have announced so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// `(protocol, addr)` per `listening` line, in order.
    pub listeners: Vec<(String, SocketAddr)>,
    /// Whether `ready` was seen.
    pub ready: bool,
}

impl Readiness {
    /// Feeds one stderr line.
    pub fn ingest(&mut self, line: &str) {
        let Some(event) = parse_log_line(line) else {
            return;
        };
        match event.message() {
            Some("listening") => {
                let protocol = event.field("protocol");
                let addr = event.field("addr").and_then(|a| a.parse().ok());
                if let (Some(protocol), Some(addr)) = (protocol, addr) {
                    self.listeners.push((protocol.to_owned(), addr));
                }
            }
            Some("ready") => self.ready = true,
            _ => {}
        }
    }

    /// Every address announced for `protocol`.
    pub fn addrs(&self, protocol: &str) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(p, _)| p == protocol)
            .map(|(_, a)| *a)
            .collect()
    }
}
