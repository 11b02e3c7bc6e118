//! The production [`Connector`]: the relay's own login path (the account's TLS settings,
//! `hostname` in EHLO, the stored code injected), so a queued message leaves exactly as a
//! relayed one would. No warm spare is used: a spare is for interactive clients.

use std::sync::Arc;

use super::Connector;
use crate::net::LineStream;
use crate::proto::Protocol;
use crate::runtime::Runtime;
use crate::session::{upstream_login, Purpose, Upstream};
use crate::upstream::{UpstreamError, UpstreamStream};

/// Logs in through [`crate::session::upstream_login`].
pub struct UpstreamConnector {
    rt: Arc<Runtime>,
}

impl UpstreamConnector {
    /// Over the running configuration.
    pub fn new(rt: Arc<Runtime>) -> UpstreamConnector {
        UpstreamConnector { rt }
    }
}

impl Connector for UpstreamConnector {
    type Stream = UpstreamStream;

    async fn connect(&self, account: &str) -> Result<LineStream<UpstreamStream>, UpstreamError> {
        let not_configured = || UpstreamError::NotConfigured(Protocol::Smtp.name());
        let acc = self
            .rt
            .config
            .accounts
            .iter()
            .find(|a| a.id == account)
            .ok_or_else(not_configured)?;
        match upstream_login(&self.rt, Protocol::Smtp, acc, Purpose::Plain).await? {
            Upstream::Smtp(up) => Ok(up.conn),
            _ => Err(not_configured()),
        }
    }
}
