//! Why a local TLS handshake failed, as one plain sentence for the person debugging a
//! printer: what the client offered and the setting that would accept it. Both backends'
//! errors (rustls, and OpenSSL's reason strings in a `legacy-tls` build).

use std::net::IpAddr;

use super::sniff::{offered_version, Offered};
use crate::config::MinVersion;

/// What is known about a failed handshake.
#[derive(Debug)]
pub enum Failure<'a> {
    /// The handshake returned this error.
    Error(&'a std::io::Error),
    /// It did not finish within the pre-auth timeout.
    Timeout,
}

/// The log sentence for a failed handshake with `client`, whose first bytes were `head`,
/// on a gateway whose oldest accepted version is `min`.
pub fn explain(client: IpAddr, head: &[u8], failure: Failure<'_>, min: MinVersion) -> String {
    let offered = offered_version(head);
    if let Some(old) = offered.filter(|v| !accepted(*v, min)) {
        return format!(
            "client {client} offered only {}; {}",
            old.name(),
            old_version_advice(old, crate::LEGACY_TLS)
        );
    }
    let why = match failure {
        Failure::Timeout => "did not complete the TLS handshake in time".to_string(),
        Failure::Error(e) => {
            let inner = e.get_ref();
            if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
                explain_rustls(tls)
            } else if let Some(reasons) = inner.and_then(openssl_reasons) {
                explain_openssl(&reasons)
            } else if head.is_empty() {
                "closed the connection before the TLS handshake".into()
            } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "closed the connection during the TLS handshake".into()
            } else {
                format!("broke off the TLS handshake ({e})")
            }
        }
    };
    format!("client {client} {why}")
}

/// Whether a gateway with `min` takes a client whose newest version is `offered`.
fn accepted(offered: Offered, min: MinVersion) -> bool {
    match offered {
        Offered::Ssl3 => false,
        Offered::Tls10 => min <= MinVersion::Tls10,
        Offered::Tls11 => min <= MinVersion::Tls11,
        Offered::Tls12OrNewer => true,
    }
}

/// What to do about a client limited to `old`: the `min_version` that takes it where this
/// build can (`legacy_built`, i.e. [`crate::LEGACY_TLS`]), else how to get such a build.
fn old_version_advice(old: Offered, legacy_built: bool) -> String {
    let setting = match old {
        Offered::Tls10 => "1.0",
        Offered::Tls11 => "1.1",
        // SSL 3.0 (POODLE, RFC 7568 forbids it) is offered by no build.
        Offered::Ssl3 | Offered::Tls12OrNewer => {
            return "this gateway never accepts SSL 3.0 (RFC 7568): connect such a device to \
                    a plain (non-TLS) listener on a trusted LAN"
                .into()
        }
    };
    if legacy_built {
        format!("set [tls] min_version = \"{setting}\" to accept this device")
    } else {
        format!(
            "this build accepts TLS 1.2 and 1.3 only: [tls] min_version = \"{setting}\" needs \
             a build with the legacy-tls feature (the Docker image, or cargo build --features \
             legacy-tls); else connect such a device to a plain (non-TLS) listener on a \
             trusted LAN"
        )
    }
}

/// OpenSSL's reason strings (e.g. "no shared cipher") when `inner` is an OpenSSL error.
#[cfg(feature = "legacy-tls")]
fn openssl_reasons(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Vec<String>> {
    let e = inner.downcast_ref::<openssl::ssl::Error>()?;
    Some(
        e.ssl_error()
            .map(|stack| {
                stack
                    .errors()
                    .iter()
                    .filter_map(|e| e.reason().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// No OpenSSL without the feature.
#[cfg(not(feature = "legacy-tls"))]
fn openssl_reasons(_: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Vec<String>> {
    None
}

/// The sentence for OpenSSL's reason strings (the names of its `SSL_R_*` codes).
fn explain_openssl(reasons: &[String]) -> String {
    let has = |needles: &[&str]| reasons.iter().any(|r| needles.contains(&r.as_str()));
    if has(&["no shared cipher"]) {
        "offered no cipher suite in common with this gateway".into()
    } else if has(&[
        "no suitable signature algorithm",
        "no shared signature algorithms",
    ]) {
        "cannot verify this certificate's signature type: set [tls] key_type = \"rsa\" and \
         regenerate the certificate"
            .into()
    } else if has(&[
        "tlsv1 alert unknown ca",
        "sslv3 alert bad certificate",
        "sslv3 alert certificate unknown",
        "sslv3 alert unsupported certificate",
        "sslv3 alert certificate expired",
    ]) {
        "rejected the certificate (not trusted): import the CA from `qqmail-proxy ca export` \
         into the device, or turn off its certificate check"
            .into()
    } else if has(&[
        "wrong version number",
        "http request",
        "https proxy request",
        "unknown protocol",
        "packet length too long",
    ]) {
        "did not send a TLS handshake (a plaintext client on a TLS port? use the plain port, \
         or an auto:// listener)"
            .into()
    } else if has(&["unexpected eof while reading"]) {
        "closed the connection during the TLS handshake".into()
    } else if reasons.is_empty() {
        "broke off the TLS handshake".into()
    } else {
        format!("failed the TLS handshake ({})", reasons.join(", "))
    }
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, Error, PeerIncompatible as P};
    match e {
        // A client offering only TLS_RSA_* suites sends no key-exchange groups: rustls
        // notices that first, but what the person must hear is the same.
        Error::PeerIncompatible(P::NoCipherSuitesInCommon | P::NoKxGroupsInCommon) => {
            if crate::LEGACY_TLS {
                "offered no cipher suite in common with this gateway (a device limited to old \
                 CBC/RSA suites: set [tls] min_version = \"1.0\", which also accepts those)"
                    .into()
            } else {
                "offered no cipher suite in common with this gateway (a device limited to old \
                 CBC/RSA suites: connect it to a plain listener on a trusted LAN)"
                    .into()
            }
        }
        Error::PeerIncompatible(P::NoSignatureSchemesInCommon) => {
            "cannot verify this certificate's signature type: set [tls] key_type = \"rsa\" \
             and regenerate the certificate"
                .into()
        }
        Error::PeerIncompatible(other) => {
            format!("offered no TLS settings this gateway accepts ({other:?})")
        }
        Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired,
        ) => "rejected the certificate (not trusted): import the CA from `qqmail-proxy ca \
              export` into the device, or turn off its certificate check"
            .into(),
        Error::AlertReceived(alert) => format!("ended the TLS handshake with alert {alert:?}"),
        Error::InvalidMessage(_) => "did not send a TLS handshake (a plaintext client on a \
                                     TLS port? use the plain port, or an auto:// listener)"
            .into(),
        other => format!("failed the TLS handshake ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    const TLS10: [u8; 11] = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 1];
    const TLS11: [u8; 11] = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 2];
    const TLS12: [u8; 11] = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 3];
    const SSL3: [u8; 11] = [0x16, 3, 0, 0, 0x80, 1, 0, 0, 0x7c, 3, 0];

    #[test]
    fn sentences() {
        use MinVersion::{Tls10, Tls11, Tls12};
        let ip: IpAddr = "192.168.1.50".parse().expect("ip");
        let no_suite = io(rustls::PeerIncompatible::NoCipherSuitesInCommon.into());
        let rsa_kx_only = io(rustls::PeerIncompatible::NoKxGroupsInCommon.into());
        let old = io(rustls::PeerIncompatible::Tls12NotOffered.into());
        let untrusted = io(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        // This build's advice for an old client: the setting, or how to get it.
        let advice = |v: &str| {
            if crate::LEGACY_TLS {
                format!("set [tls] min_version = \"{v}\" to accept this device")
            } else {
                format!(
                    "this build accepts TLS 1.2 and 1.3 only: [tls] min_version = \"{v}\" \
                     needs a build with the legacy-tls feature"
                )
            }
        };
        let cases: Vec<(&[u8], Failure, MinVersion, String)> = vec![
            (
                &TLS10,
                Failure::Error(&old),
                Tls12,
                format!(
                    "client 192.168.1.50 offered only TLS 1.0; {}",
                    advice("1.0")
                ),
            ),
            (
                &TLS11,
                Failure::Error(&old),
                Tls12,
                format!("offered only TLS 1.1; {}", advice("1.1")),
            ),
            (
                &TLS10,
                Failure::Error(&eof),
                Tls11,
                format!("offered only TLS 1.0; {}", advice("1.0")),
            ),
            // Accepted versions are not blamed: the error says what went wrong.
            (
                &TLS11,
                Failure::Error(&eof),
                Tls11,
                "client 192.168.1.50 closed the connection during the TLS handshake".into(),
            ),
            (
                &TLS10,
                Failure::Timeout,
                Tls10,
                "did not complete the TLS handshake in time".into(),
            ),
            (
                &SSL3,
                Failure::Error(&eof),
                Tls10,
                "offered only SSL 3.0; this gateway never accepts SSL 3.0".into(),
            ),
            (
                &TLS12,
                Failure::Error(&no_suite),
                Tls12,
                "client 192.168.1.50 offered no cipher suite in common".into(),
            ),
            (
                &TLS12,
                Failure::Error(&rsa_kx_only),
                Tls12,
                "offered no cipher suite in common".into(),
            ),
            (
                &TLS12,
                Failure::Error(&untrusted),
                Tls12,
                "rejected the certificate (not trusted)".into(),
            ),
            (
                &TLS12,
                Failure::Timeout,
                Tls12,
                "did not complete the TLS handshake in time".into(),
            ),
            (
                b"",
                Failure::Error(&eof),
                Tls12,
                "closed the connection before the TLS handshake".into(),
            ),
        ];
        for (head, failure, min, expected) in cases {
            let text = explain(ip, head, failure, min);
            assert!(text.contains(&expected), "{text}\nlacks: {expected}");
        }
    }

    /// Both builds' advice for an old client, whichever this one is.
    #[test]
    fn old_version_advice_with_and_without_the_feature() {
        let cases: &[(Offered, bool, &[&str])] = &[
            (
                Offered::Tls10,
                true,
                &["set [tls] min_version = \"1.0\" to accept this device"],
            ),
            (Offered::Tls11, true, &["set [tls] min_version = \"1.1\""]),
            (
                Offered::Tls10,
                false,
                &[
                    "this build accepts TLS 1.2 and 1.3 only",
                    "[tls] min_version = \"1.0\" needs a build with the legacy-tls feature",
                    "cargo build --features legacy-tls",
                    "plain (non-TLS) listener",
                ],
            ),
            (
                Offered::Ssl3,
                true,
                &["never accepts SSL 3.0", "plain (non-TLS)"],
            ),
        ];
        for (old, built, needles) in cases {
            let text = old_version_advice(*old, *built);
            for n in *needles {
                assert!(text.contains(n), "{old:?} {built}: {text}");
            }
        }
    }

    /// OpenSSL's reason strings (the legacy-tls backend) to the same sentences.
    #[test]
    fn openssl_reasons_to_sentences() {
        let cases: &[(&[&str], &str)] = &[
            (&["no shared cipher"], "offered no cipher suite in common"),
            (
                &["tlsv1 alert unknown ca"],
                "rejected the certificate (not trusted)",
            ),
            (&["sslv3 alert bad certificate"], "rejected the certificate"),
            (
                &["sslv3 alert certificate unknown"],
                "rejected the certificate",
            ),
            (&["wrong version number"], "did not send a TLS handshake"),
            (&["http request"], "did not send a TLS handshake"),
            (
                &["unexpected eof while reading"],
                "closed the connection during the TLS handshake",
            ),
            (
                &["no suitable signature algorithm"],
                "[tls] key_type = \"rsa\"",
            ),
            (
                &["bad record mac"],
                "failed the TLS handshake (bad record mac)",
            ),
            (&[], "broke off the TLS handshake"),
        ];
        for (reasons, expected) in cases {
            let reasons: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
            let text = explain_openssl(&reasons);
            assert!(text.contains(expected), "{reasons:?}: {text}");
        }
    }
}
