//! Why a local TLS handshake failed, as one plain sentence for the person debugging a
//! printer: what the client offered and the setting that would accept it.

use std::net::IpAddr;

use super::sniff::{offered_version, Offered};

/// What is known about a failed handshake.
#[derive(Debug)]
pub enum Failure<'a> {
    /// The handshake returned this error.
    Error(&'a std::io::Error),
    /// It did not finish within the pre-auth timeout.
    Timeout,
}

/// The log sentence for a failed handshake with `client`, whose first bytes were `head`.
pub fn explain(client: IpAddr, head: &[u8], failure: Failure<'_>) -> String {
    let offered = offered_version(head);
    if let Some(old) = offered.filter(|v| *v < Offered::Tls12OrNewer) {
        // TLS 1.0/1.1 on the local side (an OpenSSL backend, issue 13) is not built yet:
        // say what works today instead of naming a setting that does not exist.
        return format!(
            "client {client} offered only {}; this gateway accepts TLS 1.2 and 1.3 only: \
             connect such a device to a plain (non-TLS) listener on a trusted LAN",
            old.name()
        );
    }
    let why = match failure {
        Failure::Timeout => "did not complete the TLS handshake in time".to_string(),
        Failure::Error(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => explain_rustls(tls),
            None if head.is_empty() => "closed the connection before the TLS handshake".into(),
            None => format!("broke off the TLS handshake ({e})"),
        },
    };
    format!("client {client} {why}")
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, Error, PeerIncompatible as P};
    match e {
        // A client offering only TLS_RSA_* suites sends no key-exchange groups: rustls
        // notices that first, but what the person must hear is the same.
        Error::PeerIncompatible(P::NoCipherSuitesInCommon | P::NoKxGroupsInCommon) => {
            "offered no cipher suite in common with this gateway (a device limited to old \
             CBC/RSA suites: connect it to a plain listener on a trusted LAN)"
                .into()
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

    #[test]
    fn sentences() {
        let ip: IpAddr = "192.168.1.50".parse().expect("ip");
        let tls10 = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 1];
        let tls11 = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 2];
        let tls12 = [0x16, 3, 1, 0, 0x80, 1, 0, 0, 0x7c, 3, 3];
        let no_suite = io(rustls::PeerIncompatible::NoCipherSuitesInCommon.into());
        let rsa_kx_only = io(rustls::PeerIncompatible::NoKxGroupsInCommon.into());
        let old = io(rustls::PeerIncompatible::Tls12NotOffered.into());
        let untrusted = io(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let cases: Vec<(&[u8], Failure, &str)> = vec![
            (
                &tls10,
                Failure::Error(&old),
                "client 192.168.1.50 offered only TLS 1.0; this gateway accepts TLS 1.2 and \
                 1.3 only",
            ),
            (
                &tls11,
                Failure::Error(&old),
                "offered only TLS 1.1; this gateway accepts TLS 1.2 and 1.3 only",
            ),
            (
                &tls12,
                Failure::Error(&no_suite),
                "client 192.168.1.50 offered no cipher suite in common",
            ),
            (
                &tls12,
                Failure::Error(&rsa_kx_only),
                "offered no cipher suite in common",
            ),
            (
                &tls12,
                Failure::Error(&untrusted),
                "rejected the certificate (not trusted)",
            ),
            (
                &tls12,
                Failure::Timeout,
                "did not complete the TLS handshake in time",
            ),
            (
                b"",
                Failure::Error(&eof),
                "closed the connection before the TLS handshake",
            ),
        ];
        for (head, failure, expected) in cases {
            let text = explain(ip, head, failure);
            assert!(text.contains(expected), "{text}");
        }
    }
}
