//! What a client's first bytes say: a TLS ClientHello (for `auto://` listeners, which serve
//! implicit TLS and plaintext on one port) and, in a ClientHello, the newest protocol
//! version the client offers (for the log line of a failed handshake).

use std::time::Duration;

/// How long an `auto://` listener waits for a client's first bytes before it sends the
/// plaintext greeting. A TLS client sends its ClientHello at once, while a plaintext mail
/// client waits for the greeting and sends nothing: every plaintext session on an
/// `auto://` listener starts up to this much later; plain listeners never wait.
pub const AUTO_TLS_WAIT: Duration = Duration::from_millis(100);

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record (RFC 8446 §5.1: content type 22, legacy record version
    /// 3.x) — a ClientHello.
    Tls,
    /// Anything else: a plaintext client.
    Plain,
    /// Too few bytes to tell.
    NeedMore,
}

/// Classifies the first bytes of a connection: `0x16 0x03 0x00..=0x04` is a TLS handshake
/// record (SSL 3.0 to TLS 1.3 all use major version 3 in the record header).
pub fn classify(first: &[u8]) -> FirstBytes {
    match first {
        [] | [0x16] | [0x16, 0x03] => FirstBytes::NeedMore,
        [0x16, 0x03, minor, ..] if *minor <= 0x04 => FirstBytes::Tls,
        _ => FirstBytes::Plain,
    }
}

/// A protocol version a client can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offered {
    /// SSL 3.0.
    Ssl3,
    /// TLS 1.0.
    Tls10,
    /// TLS 1.1.
    Tls11,
    /// TLS 1.2 or newer (TLS 1.3 clients put 1.2 here, RFC 8446 §4.1.2).
    Tls12OrNewer,
}

impl Offered {
    /// As people write it.
    pub fn name(self) -> &'static str {
        match self {
            Offered::Ssl3 => "SSL 3.0",
            Offered::Tls10 => "TLS 1.0",
            Offered::Tls11 => "TLS 1.1",
            Offered::Tls12OrNewer => "TLS 1.2",
        }
    }
}

/// The ClientHello's `client_version` (the newest version a pre-1.3 client offers): byte
/// 9 and 10 of the connection — record header (5), handshake type 1 and length (4).
pub fn offered_version(head: &[u8]) -> Option<Offered> {
    if classify(head) != FirstBytes::Tls || head.len() < 11 || head[5] != 0x01 {
        return None;
    }
    match (head[9], head[10]) {
        (3, 0) => Some(Offered::Ssl3),
        (3, 1) => Some(Offered::Tls10),
        (3, 2) => Some(Offered::Tls11),
        (3, m) if m >= 3 => Some(Offered::Tls12OrNewer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 11 bytes of a ClientHello with `version` in the record and the hello.
    fn hello(record: u8, version: u8) -> Vec<u8> {
        vec![0x16, 3, record, 0, 0x80, 0x01, 0, 0, 0x7c, 3, version]
    }

    #[test]
    fn first_bytes() {
        let cases: &[(&[u8], FirstBytes)] = &[
            (b"", FirstBytes::NeedMore),
            (&[0x16], FirstBytes::NeedMore),
            (&[0x16, 0x03], FirstBytes::NeedMore),
            (&[0x16, 0x03, 0x01], FirstBytes::Tls),
            (&[0x16, 0x03, 0x03, 0x00, 0x10], FirstBytes::Tls),
            (&[0x16, 0x03, 0x05], FirstBytes::Plain),
            (&[0x16, 0x02], FirstBytes::Plain),
            (b"EHLO printer\r\n", FirstBytes::Plain),
            (b"a1 LOGIN", FirstBytes::Plain),
            (b"USER x", FirstBytes::Plain),
            (b"GET / HTTP/1.1", FirstBytes::Plain),
            (&[0x80, 0x2e, 0x01], FirstBytes::Plain),
        ];
        for (bytes, expected) in cases {
            assert_eq!(classify(bytes), *expected, "{bytes:?}");
        }
    }

    #[test]
    fn offered_versions() {
        let cases: &[(Vec<u8>, Option<Offered>)] = &[
            (hello(1, 1), Some(Offered::Tls10)),
            (hello(1, 2), Some(Offered::Tls11)),
            (hello(1, 3), Some(Offered::Tls12OrNewer)),
            (hello(0, 0), Some(Offered::Ssl3)),
            (hello(1, 1)[..10].to_vec(), None),
            (b"EHLO printer\r\n".to_vec(), None),
            // Not a ClientHello (handshake type 2).
            (
                {
                    let mut h = hello(1, 1);
                    h[5] = 2;
                    h
                },
                None,
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(offered_version(bytes), *expected, "{bytes:?}");
        }
        assert!(Offered::Tls10 < Offered::Tls12OrNewer);
    }
}
