//! Shared driver of the login-phase fuzz targets: one fuzzer input becomes a policy, a
//! chunking of the client bytes and the login outcomes the "pipeline" reports, and every
//! step is checked against the invariants the session pipeline relies on.
//!
//! Input layout: the first [`CONTROL`] bytes steer the run, the rest is what the client
//! sends. Control byte 0 picks the policy, 1 the outcome flavours, 2..10 the chunk sizes
//! (cycled), 10..16 the login outcomes (cycled). A short input simply has fewer control
//! bytes (missing ones read as 0) and no payload.
#![forbid(unsafe_code)]

use bytes::BytesMut;
use qqmail_proxy::proto::{Action, LoginOutcome, LoginPhase, Policy, Protocol, StartTlsMode};

/// Bytes at the front of an input that steer the run.
pub const CONTROL: usize = 16;

/// Upstream reasons a login can fail with; two try to inject a reply line.
const REASONS: &[&str] = &[
    "cannot reach imap.qq.com:993: connection refused",
    "evil\r\n250 2.0.0 injected\r\n",
    "",
    "\u{0}\u{7f}\u{85}\u{2028}tab\there",
];

/// Upstream capability lists; one tries to close the response code and inject a line.
const CAPABILITIES: &[Option<&[u8]>] = &[
    None,
    Some(b"IMAP4rev1 IDLE MOVE"),
    Some(b"IMAP4rev1] x\r\n* OK injected"),
    Some(b""),
];

/// One fuzzer input, split into control bytes and client payload.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    control: &'a [u8],
    /// The bytes the client sends.
    pub payload: &'a [u8],
}

impl<'a> Plan<'a> {
    /// Splits `data` into control bytes and payload.
    pub fn new(data: &'a [u8]) -> Plan<'a> {
        let (control, payload) = data.split_at(CONTROL.min(data.len()));
        Plan { control, payload }
    }

    fn byte(&self, i: usize) -> u8 {
        self.control.get(i).copied().unwrap_or(0)
    }

    /// The session policy: STARTTLS mode, line and literal limits (small ones included,
    /// so that the over-long paths are reached), allow-listing and SIZE.
    pub fn policy(&self) -> Policy {
        let b = self.byte(0);
        Policy {
            starttls: match b % 3 {
                0 => StartTlsMode::Off,
                1 => StartTlsMode::Optional,
                _ => StartTlsMode::Required,
            },
            max_line: [8, 64, 512, 16 * 1024][usize::from((b >> 2) & 3)],
            max_literal: [0, 16, 1024, 16 * 1024][usize::from((b >> 4) & 3)],
            hostname: "fuzz.local".into(),
            allow_unauthenticated: b & 0x40 != 0,
            smtp_size: (b & 0x80 != 0).then(|| u64::from(self.byte(1)) * 1000),
        }
    }

    /// Size of the `step`-th chunk of client bytes, 1..=256.
    pub fn chunk(&self, step: usize) -> usize {
        usize::from(self.byte(2 + step % 8)) + 1
    }

    /// The outcome reported for the `n`-th login.
    pub fn outcome(&self, n: usize) -> LoginOutcome {
        let b = self.byte(10 + n % 6);
        let flavour = usize::from(self.byte(1));
        match b % 5 {
            0 => LoginOutcome::Success {
                capabilities: CAPABILITIES[flavour % CAPABILITIES.len()].map(<[u8]>::to_vec),
            },
            1 => LoginOutcome::BadCredentials,
            2 => LoginOutcome::TooManyFailures,
            3 => LoginOutcome::UpstreamUnavailable {
                reason: REASONS[(flavour >> 2) % REASONS.len()].to_owned(),
            },
            _ => LoginOutcome::UpstreamRejected,
        }
    }
}

/// Every reply is one or more whole CRLF-terminated lines.
fn assert_lines(what: &str, bytes: &[u8]) {
    assert!(
        bytes.ends_with(b"\r\n"),
        "{what} does not end in CRLF: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// A reply carrying an upstream text must stay one line: no injected reply lines.
fn assert_one_line(what: &str, bytes: &[u8]) {
    assert_lines(what, bytes);
    let lfs = bytes.iter().filter(|&&b| b == b'\n').count();
    let crs = bytes.iter().filter(|&&b| b == b'\r').count();
    assert!(
        lfs == 1 && crs == 1,
        "{what} spans several lines: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

/// Drives the login phase made by `make` through one fuzzer input, as the session
/// pipeline would, panicking on any broken invariant:
/// - after `NeedMore` the input buffer holds at most one partial line (`max_line + 1`);
/// - each `advance` makes progress (a bounded number of actions per byte received);
/// - replies are whole CRLF lines; upstream texts cannot inject extra lines;
/// - no credentials are handed out before STARTTLS when it is required, STARTTLS is
///   never offered when off nor run twice, and only an allow-listed SMTP client may
///   proceed without AUTH;
/// - `login_result` answers with `Reply` or `Close` only.
pub fn drive<P: LoginPhase>(data: &[u8], make: fn(Policy) -> P) {
    let plan = Plan::new(data);
    let policy = plan.policy();
    let mut phase = make(policy.clone());
    assert_lines("greeting", &phase.greeting());
    assert_lines("timeout reply", &phase.timeout_reply());
    assert_lines("shutdown reply", &phase.shutdown_reply());
    let mut tls = false;
    let mut logins = 0usize;
    let mut buf = BytesMut::new();
    let mut rest = plan.payload;
    let mut step = 0usize;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(plan.chunk(step).min(rest.len()));
        rest = tail;
        step += 1;
        buf.extend_from_slice(piece);
        // Each action consumes input or changes state; a few state changes per byte
        // (plus a constant) is generous, an endless loop is not.
        let mut budget = 4 * buf.len() + 16;
        loop {
            budget = budget.checked_sub(1).expect("advance made no progress");
            match phase.advance(&mut buf) {
                Action::NeedMore => {
                    assert!(
                        buf.len() <= policy.max_line + 1,
                        "input buffer holds {} bytes with max_line {}",
                        buf.len(),
                        policy.max_line
                    );
                    break;
                }
                Action::Reply(bytes) => assert_lines("reply", &bytes),
                Action::StartTls(bytes) => {
                    assert_lines("STARTTLS reply", &bytes);
                    assert!(policy.starttls != StartTlsMode::Off, "STARTTLS while off");
                    assert!(!tls, "STARTTLS inside TLS");
                    // The pipeline discards plaintext pipelined behind STARTTLS.
                    buf.clear();
                    tls = true;
                    phase.tls_started();
                }
                Action::Login(_creds) => {
                    assert!(
                        tls || policy.starttls != StartTlsMode::Required,
                        "credentials accepted in plaintext although STARTTLS is required"
                    );
                    let outcome = plan.outcome(logins);
                    logins += 1;
                    let success = matches!(outcome, LoginOutcome::Success { .. });
                    let upstream_text = matches!(
                        outcome,
                        LoginOutcome::UpstreamUnavailable { .. } | LoginOutcome::UpstreamRejected
                    ) || (success && P::PROTOCOL == Protocol::Imap);
                    match phase.login_result(outcome) {
                        Action::Reply(bytes) => {
                            if upstream_text {
                                assert_one_line("login reply with upstream text", &bytes);
                            } else {
                                assert_lines("login reply", &bytes);
                            }
                            if success {
                                return;
                            }
                        }
                        Action::Close(bytes) => {
                            assert_lines("login close", &bytes);
                            return;
                        }
                        other => panic!("login_result returned {other:?}"),
                    }
                }
                Action::Proceed => {
                    assert!(
                        P::PROTOCOL == Protocol::Smtp && policy.allow_unauthenticated,
                        "proceeded without AUTH although not allow-listed"
                    );
                    return;
                }
                Action::Close(bytes) => {
                    assert_lines("close", &bytes);
                    return;
                }
                Action::CrossProtocol(bytes) => {
                    assert_lines("cross-protocol close", &bytes);
                    return;
                }
            }
        }
    }
}
