//! The upstream side of a login: connect to the account's server for a protocol (a warm
//! spare when one is ready), verify its certificate, log in with the stored code, and
//! record the result in the metrics, the activity record and the log.

use std::time::Instant;

use tracing::{debug, warn};

use crate::config::Account;
use crate::proto::Protocol;
use crate::runtime::Runtime;
use crate::upstream::pool::Refill;
use crate::upstream::{self, UpstreamError};

/// A logged-in upstream of any protocol.
pub enum Upstream {
    /// SMTP, ready for MAIL.
    Smtp(upstream::smtp::SmtpUpstream),
    /// IMAP, authenticated state.
    Imap(upstream::imap::ImapUpstream),
    /// POP3, transaction state.
    Pop3(upstream::pop3::Pop3Upstream),
}

/// How an upstream login is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client is logging in: a warm spare may serve it, and a burst of such logins
    /// keeps one ready.
    ClientLogin,
    /// Anything else (the SMTP relay reconnecting, `check`): a plain new connection.
    Plain,
}

/// Connects to the account's upstream for `protocol` and logs in with its code. A warm
/// spare's refill, if this login started one, begins at once.
pub async fn upstream_login(
    rt: &Runtime,
    protocol: Protocol,
    account: &Account,
    purpose: Purpose,
) -> Result<Upstream, UpstreamError> {
    login_upstream(rt, protocol, account, purpose)
        .await
        .map(|(up, _refill)| up)
}

/// [`upstream_login`] for a session: the caller holds the [`Refill`] while the session
/// runs, so that the next spare's handshake does not compete with this session.
pub(crate) async fn login_upstream(
    rt: &Runtime,
    protocol: Protocol,
    account: &Account,
    purpose: Purpose,
) -> Result<(Upstream, Refill), UpstreamError> {
    let server = match protocol {
        Protocol::Smtp => account.smtp.as_ref(),
        Protocol::Imap => account.imap.as_ref(),
        Protocol::Pop3 => account.pop3.as_ref(),
    }
    .ok_or(UpstreamError::NotConfigured(protocol.name()))?;
    let tls = rt
        .upstream_tls(account)
        .ok_or(UpstreamError::NotConfigured(protocol.name()))?;
    let timeout = rt.config.limits.upstream_timeout;
    let started = Instant::now();
    let ctx = upstream::Ctx::new(account, server, timeout);
    let pool = rt.pool.as_ref().filter(|_| purpose == Purpose::ClientLogin);
    let key = (account.id.clone(), protocol);
    use upstream::pool::login_with;
    let result = match protocol {
        Protocol::Smtp => {
            let hostname = rt.config.hostname.as_str();
            login_with::<upstream::smtp::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::smtp::login(c, &ctx, account, hostname)
            })
            .await
            .map(|(u, r)| (Upstream::Smtp(u), r))
        }
        Protocol::Imap => {
            login_with::<upstream::imap::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::imap::login(c, &ctx, account)
            })
            .await
            .map(|(u, r)| (Upstream::Imap(u), r))
        }
        Protocol::Pop3 => {
            login_with::<upstream::pop3::Dialog, _, _, _>(pool, key, server, tls, &ctx, |c| {
                upstream::pop3::login(c, &ctx, account)
            })
            .await
            .map(|(u, r)| (Upstream::Pop3(u), r))
        }
    };
    let server_name = server.to_string();
    let login = (account.id.as_str(), protocol, server_name.as_str());
    rt.activity
        .upstream_login(login, result.as_ref().map(|_| ()));
    match &result {
        Ok((up, _)) => {
            if let Upstream::Smtp(s) = up {
                if let Some(size) = s.caps.size.filter(|&n| n > 0) {
                    rt.learn_smtp_size(account, size);
                }
            }
            rt.metrics
                .upstream_ok(protocol, &server_name, started.elapsed());
            debug!(account = %account.id, upstream = %server_name, "upstream login ok");
        }
        Err(e) => {
            rt.metrics.upstream_error(protocol, &server_name, e.kind());
            warn!(
                account = %account.id,
                email = %account.email,
                upstream = %server_name,
                error = %e,
                hint = e.hint().unwrap_or(""),
                "upstream login failed"
            );
        }
    }
    result
}
