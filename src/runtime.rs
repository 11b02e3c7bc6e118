//! Everything sessions share, built from one validated [`Config`]: the local users'
//! authenticator, the STARTTLS acceptor, one verified TLS client config per account, and
//! what was learnt from upstreams. Rebuilt whole on SIGHUP; sessions keep the one they
//! started with. Only [`Kept`] passes from one runtime to the next: the counters, the
//! activity record and the guessing defences' state (a reload must not forgive failures,
//! end lockouts or throttles, nor blank the status page).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;

use crate::activity::Activity;
use crate::auth::{Authenticator, Guards};
use crate::config::{Account, Config, SaveSent, User};
use crate::metrics::Metrics;
use crate::queue::deliver::Intake;
use crate::sent::{Copier, Target};
use crate::tls::{self, TlsError};

/// Why a runtime could not be built.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The local certificate or an account's `ca_file` is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What outlives a reload: the runtime built from a new configuration takes it over from
/// the running one ([`Runtime::kept`]).
#[derive(Clone, Default)]
pub struct Kept {
    /// Counters for the admin endpoint.
    pub metrics: Arc<Metrics>,
    /// Failed logins and lockouts per client host, budgets per user, the check ceiling.
    pub guards: Guards,
    /// The queue's intake, set once by `serve` after the deliverer started (issue 12).
    pub queue: Arc<OnceLock<Intake>>,
    /// What the status page shows: recent sessions, devices, upstream logins (issue 14).
    pub activity: Arc<Activity>,
    /// The `save_sent` copies in flight (their bounds hold across reloads).
    pub sent: Copier,
}

/// Shared session state.
pub struct Runtime {
    /// The configuration.
    pub config: Arc<Config>,
    /// Local users (configured or generated).
    pub auth: Authenticator,
    /// The local TLS acceptor, when any listener offers STARTTLS or implicit TLS.
    pub acceptor: Option<tls::local::LocalAcceptor>,
    /// SHA-256 fingerprint of the local certificate.
    pub fingerprint: Option<String>,
    /// True when the local certificate was generated during this start.
    pub cert_generated: bool,
    upstream_tls: HashMap<String, Arc<rustls::ClientConfig>>,
    smtp_size: Mutex<HashMap<String, u64>>,
    /// Counters (kept across reloads).
    pub metrics: Arc<Metrics>,
    /// Where queue-mode sessions put messages (empty until `serve` started the
    /// deliverer; shared across reloads).
    pub queue: Arc<OnceLock<Intake>>,
    /// The activity record behind the status page (kept across reloads).
    pub activity: Arc<Activity>,
    /// Warm upstream spares (`None` when `warm_upstream_ttl` is 0, and for `check`).
    pub pool: Option<Arc<crate::upstream::pool::Pool>>,
    /// The `save_sent` copies in flight (shared across reloads).
    pub sent: Copier,
}

impl Runtime {
    /// Builds the runtime; generates the local certificate if needed. `kept` is
    /// `Kept::default()` at start, the running runtime's [`Runtime::kept`] on a reload.
    pub fn build(config: Config, users: &[User], kept: Kept) -> Result<Runtime, RuntimeError> {
        let Kept {
            metrics,
            guards,
            queue,
            activity,
            sent,
        } = kept;
        let needs_tls = [
            config.smtp.as_ref().map(|s| &s.listener),
            config.imap.as_ref(),
            config.pop3.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(|l| l.needs_certificate());
        let (acceptor, fingerprint, cert_generated) = if needs_tls {
            let cert = tls::local::load_or_generate(&config.tls, &config.hostname)?;
            (Some(cert.acceptor), Some(cert.fingerprint), cert.generated)
        } else {
            (None, None, false)
        };
        let mut upstream_tls = HashMap::new();
        for a in &config.accounts {
            upstream_tls.insert(
                a.id.clone(),
                tls::upstream::client_config(a.ca_file.as_deref())?,
            );
        }
        let auth = Authenticator::new(&config, users, guards, metrics.clone());
        let ttl = config.limits.warm_upstream_ttl;
        let pool = (!ttl.is_zero()).then(|| crate::upstream::pool::Pool::new(ttl));
        Ok(Runtime {
            pool,
            config: Arc::new(config),
            auth,
            acceptor,
            fingerprint,
            cert_generated,
            upstream_tls,
            smtp_size: Mutex::new(HashMap::new()),
            metrics,
            queue,
            activity,
            sent,
        })
    }

    /// A runtime for the operator commands: upstream TLS only, no local certificate and
    /// no users.
    pub fn build_for_check(config: &Config, users: &[User]) -> Result<Runtime, RuntimeError> {
        let mut upstream_tls = HashMap::new();
        for a in &config.accounts {
            upstream_tls.insert(
                a.id.clone(),
                tls::upstream::client_config(a.ca_file.as_deref())?,
            );
        }
        let shallow = Config {
            state_dir: config.state_dir.clone(),
            hostname: config.hostname.clone(),
            log_format: config.log_format,
            accounts: config.accounts.clone(),
            users: users.to_vec(),
            smtp: None,
            imap: None,
            pop3: None,
            tls: config.tls.clone(),
            limits: config.limits.clone(),
            admin: None,
            admin_password_hash: None,
            queue: config.queue.clone(),
            warnings: Vec::new(),
            file: config.file.clone(),
            listen_origins: Vec::new(),
        };
        Ok(Runtime {
            auth: Authenticator::new(
                &shallow,
                users,
                Guards::default(),
                Arc::new(Metrics::default()),
            ),
            config: Arc::new(shallow),
            acceptor: None,
            fingerprint: None,
            cert_generated: false,
            upstream_tls,
            smtp_size: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            queue: Arc::default(),
            activity: Arc::default(),
            pool: None,
            sent: Copier::default(),
        })
    }

    /// What the runtime that replaces this one on a reload takes over.
    pub fn kept(&self) -> Kept {
        Kept {
            metrics: self.metrics.clone(),
            guards: self.auth.guards(),
            queue: self.queue.clone(),
            activity: self.activity.clone(),
            sent: self.sent.clone(),
        }
    }

    /// The TLS client config for an account's upstreams (every configured account has one).
    pub fn upstream_tls(&self, account: &Account) -> Option<Arc<rustls::ClientConfig>> {
        self.upstream_tls.get(&account.id).cloned()
    }

    /// Where `account`'s Sent copies go, if it saves them (`save_sent = "on"`).
    pub fn sent_target(&self, account: &Arc<Account>) -> Option<Target> {
        if account.save_sent != SaveSent::On {
            return None;
        }
        Some(Target {
            account: account.clone(),
            tls: self.upstream_tls(account)?,
            timeout: self.config.limits.upstream_timeout,
            data_timeout: self.config.limits.upstream_data_timeout,
        })
    }

    /// The SIZE to advertise for an account: what its upstream said last, else the preset.
    pub fn smtp_size(&self, account: &Account) -> Option<u64> {
        let learnt = self
            .smtp_size
            .lock()
            .ok()
            .and_then(|m| m.get(&account.id).copied());
        learnt.or(account.provider.smtp_size)
    }

    /// Remembers the SIZE an account's upstream advertised.
    pub fn learn_smtp_size(&self, account: &Account, size: u64) {
        if let Ok(mut m) = self.smtp_size.lock() {
            m.insert(account.id.clone(), size);
        }
    }
}
