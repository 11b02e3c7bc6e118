//! The one table of plain-language hints for an upstream's SMTP replies (QQ's known
//! texts, FACTS.md): used by the gateway's log lines, by [`super::UpstreamError::hint`]
//! (`qqmail-proxy check`, login failures) so the same reply reads the same everywhere.

/// QQ's `550 ... frequency limited` family: a temporary ban despite the 5xx.
pub const RATE_LIMITED: &str = "the provider is rate-limiting this account or address (QQ: \
     \"frequency limited\"): wait 10-30 minutes and avoid repeated test logins";

/// `535 Login Fail`: the stored authorization code was refused.
pub const CODE_REFUSED: &str = "the authorization code is wrong or was revoked, or the \
     IMAP/SMTP service is off: generate a new code in QQ Mail → Settings → Account \
     (POP3/IMAP/SMTP service) and update the proxy's auth code";

/// `501 Mail from address must be same as authorization user` (QQ), `553 Mail from must
/// equal authorized user` (NetEase), or another refusal of the envelope sender.
pub const SENDER: &str = "the provider accepts only the account's own address as the \
     envelope sender: keep [smtp] rewrite_sender at \"envelope\" or \"header\" (not \"off\")";

/// `550 5.1.1 ... User unknown`, `550 Mailbox not found` and the like.
pub const NO_RECIPIENT: &str = "the recipient address does not exist at its provider: \
     check its spelling";

/// `552`: over the provider's size limit (QQ: 70 MiB after base64, about 50 MiB of files).
pub const TOO_LARGE: &str = "the message is larger than the provider accepts (QQ: 70 MiB \
     including encoding, about 50 MiB of attachments): send smaller files";

/// QQ's `550 The "From" header is missing or invalid`.
pub const FROM_HEADER: &str = "the provider wants a valid From: header: set [smtp] \
     add_missing_headers = true or rewrite_sender = \"header\"";

/// A TLS handshake with the provider failed verification (the error names why).
pub const TLS_UNTRUSTED: &str = "the provider's certificate could not be verified (the \
     reason is in the error): for a public provider check this machine's clock and that \
     nothing intercepts TLS (antivirus, a company proxy); for your own server set ca_file to \
     the CA that signed its certificate";

/// A hint for an upstream `reply` (its code and text, as received), or `None` when the
/// reply is no known refusal.
pub fn for_reply(reply: &[u8]) -> Option<&'static str> {
    let code = reply
        .get(..3)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())?;
    let text = reply.to_ascii_lowercase();
    let has = |needle: &str| memchr::memmem::find(&text, needle.as_bytes()).is_some();
    if code < 400 {
        return None;
    }
    if has("frequency") {
        return Some(RATE_LIMITED);
    }
    match code {
        535 => Some(CODE_REFUSED),
        552 => Some(TOO_LARGE),
        _ if has("\"from\" header") || has("from header") => Some(FROM_HEADER),
        _ if has("mail from") || has("sender") || has("authoriz") => Some(SENDER),
        _ if has("5.1.1")
            || has("unknown")
            || has("not found")
            || has("no such")
            || has("does not exist") =>
        {
            Some(NO_RECIPIENT)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_replies() {
        let table: &[(&[u8], Option<&str>)] = &[
            (b"250 Ok: queued as 1\r\n", None),
            (b"550 Connection frequency limited\r\n", Some(RATE_LIMITED)),
            (b"550 Ip frequency limited\r\n", Some(RATE_LIMITED)),
            (
                b"535 Login Fail. Please enter your authorization code\r\n",
                Some(CODE_REFUSED),
            ),
            (
                b"535 \xb5\xc7\xc2\xbc\xca\xa7\xb0\xdc\r\n",
                Some(CODE_REFUSED),
            ),
            (
                b"501 Mail from address must be same as authorization user\r\n",
                Some(SENDER),
            ),
            (
                b"553 Mail from must equal authorized user\r\n",
                Some(SENDER),
            ),
            (
                b"553 5.7.1 <a@b>: Sender address rejected\r\n",
                Some(SENDER),
            ),
            (
                b"550 5.1.1 <x@y>: Recipient address rejected: User unknown\r\n",
                Some(NO_RECIPIENT),
            ),
            (
                b"550 Mailbox not found or access denied\r\n",
                Some(NO_RECIPIENT),
            ),
            (b"552 Message size exceeds fixed limit\r\n", Some(TOO_LARGE)),
            (
                b"550 The \"From\" header is missing or invalid\r\n",
                Some(FROM_HEADER),
            ),
            (b"451 4.3.0 try later\r\n", None),
            (b"", None),
            (b"5x", None),
        ];
        for (reply, want) in table {
            assert_eq!(for_reply(reply), *want, "{}", reply.escape_ascii());
        }
    }
}
