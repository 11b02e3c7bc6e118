//! SASL PLAIN (RFC 4616) and LOGIN decoding and encoding, shared by SMTP, IMAP and POP3.
//!
//! Every decoded blob is held as a [`Secret`]: the base64 of `AUTH PLAIN` carries the
//! password, so neither the encoded nor the decoded form may reach a log.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use thiserror::Error;

use super::Credentials;
use crate::secrets::Secret;

/// Base64 of `Username:`, the first `AUTH LOGIN` challenge (draft-murchison-sasl-login).
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// Base64 of `Password:`, the second `AUTH LOGIN` challenge.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// The SASL mechanisms the proxy accepts from local clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto `LOGIN` mechanism (two base64 prompts).
    Login,
}

impl Mechanism {
    /// Parses a mechanism name, case-insensitively.
    pub fn parse(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// Why a SASL exchange failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 §4, RFC 3501 §6.2.2).
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// Not valid base64.
    #[error("invalid base64 in SASL response")]
    BadBase64,
    /// Valid base64, but not a PLAIN message (`authzid NUL authcid NUL passwd`).
    #[error("malformed SASL PLAIN message")]
    BadPlain,
}

/// Decodes one client response line. `=` is the empty response (RFC 4954 §4);
/// `*` cancels.
pub fn decode_response(line: &[u8]) -> Result<Secret, SaslError> {
    let line = line.trim_ascii();
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" {
        return Ok(Secret::default());
    }
    STANDARD
        .decode(line)
        .map(Secret::new)
        .map_err(|_| SaslError::BadBase64)
}

/// Splits a decoded PLAIN message into credentials. The authorization identity, when
/// present, must equal the authentication identity: the proxy does not act for others.
pub fn parse_plain(message: &Secret) -> Result<Credentials, SaslError> {
    let bytes = message.expose();
    let mut parts = bytes.splitn(3, |&b| b == 0);
    let authzid = parts.next().ok_or(SaslError::BadPlain)?;
    let authcid = parts.next().ok_or(SaslError::BadPlain)?;
    let passwd = parts.next().ok_or(SaslError::BadPlain)?;
    if authcid.is_empty() || (!authzid.is_empty() && authzid != authcid) {
        return Err(SaslError::BadPlain);
    }
    Ok(Credentials {
        user: String::from_utf8_lossy(authcid).into_owned(),
        password: Secret::from_slice(passwd),
    })
}

/// Decodes a whole `PLAIN` response line into credentials.
pub fn decode_plain(line: &[u8]) -> Result<Credentials, SaslError> {
    parse_plain(&decode_response(line)?)
}

/// The base64 `PLAIN` message for an upstream login, as a secret.
pub fn encode_plain(user: &str, password: &Secret) -> Secret {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.expose());
    encode(Secret::new(raw).expose())
}

/// Base64 of any bytes (for `AUTH LOGIN` steps), as a secret.
pub fn encode(bytes: &[u8]) -> Secret {
    Secret::new(STANDARD.encode(bytes).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_table() {
        let ok = |u: &str, p: &str| {
            Ok(Credentials {
                user: u.into(),
                password: Secret::from(p),
            })
        };
        let cases: &[(&str, Result<Credentials, SaslError>)] = &[
            // "\0printer\0secret"
            ("AHByaW50ZXIAc2VjcmV0", ok("printer", "secret")),
            // "printer\0printer\0secret"
            ("cHJpbnRlcgBwcmludGVyAHNlY3JldA==", ok("printer", "secret")),
            // "other\0printer\0secret": acting for someone else is refused
            ("b3RoZXIAcHJpbnRlcgBzZWNyZXQ=", Err(SaslError::BadPlain)),
            // "\0\0secret": empty user
            ("AABzZWNyZXQ=", Err(SaslError::BadPlain)),
            // "printer" only
            ("cHJpbnRlcg==", Err(SaslError::BadPlain)),
            ("not base64!", Err(SaslError::BadBase64)),
            ("*", Err(SaslError::Cancelled)),
            ("=", Err(SaslError::BadPlain)),
        ];
        for (line, want) in cases {
            assert_eq!(&decode_plain(line.as_bytes()), want, "{line}");
        }
    }

    #[test]
    fn encode_plain_round_trips() {
        let code = Secret::from("abcdefghijklmnop");
        let enc = encode_plain("12345@qq.com", &code);
        let creds = decode_plain(enc.expose()).unwrap();
        assert_eq!(creds.user, "12345@qq.com");
        assert_eq!(creds.password, code);
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse(b"plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse(b"LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse(b"CRAM-MD5"), None);
    }
}
