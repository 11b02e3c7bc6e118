//! What an attempt means for the message: which recipients are now delivered or failed,
//! the class of what went wrong (through the one table, [`crate::queue::classify`]) and
//! the next step ([`crate::queue::schedule::Policy::after`]). Pure: the worker writes the
//! changed envelope durably before it acts on the plan.

use std::time::SystemTime;

use super::conversation::{Attempt, Ending};
use crate::queue::classify::{classify, Class, Decision, Outcome, Scope, Stage};
use crate::queue::schedule::{Plan, Policy};
use crate::queue::store::{Envelope, LastError, RcptState};

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// What to do next.
    pub plan: Plan,
    /// The failure class that decided the plan (`Delivered` when nothing failed).
    pub class: Class,
    /// The failure concerns the whole account (a rate limit): its other messages wait too.
    pub account_wide: bool,
    /// Recipients delivered by this attempt.
    pub delivered: usize,
    /// This attempt sent the final dot without an answer (log "possibly duplicated").
    pub possibly_duplicated: bool,
}

/// Applies `a` to `env` (recipient states, attempts, last error, next attempt, the
/// possibly-duplicated flag) and returns the plan. `Ending::Corrupt` is not settled here:
/// the worker moves such a message aside.
pub fn settle(
    env: &mut Envelope,
    a: &Attempt,
    policy: &Policy,
    now: SystemTime,
    jitter: f64,
) -> Settled {
    env.attempts = env.attempts.saturating_add(1);
    let mut worst: Option<(Decision, Vec<u8>)> = None;
    let mut delivered = 0;
    for r in &a.rcpts {
        let Some(rcpt) = env.recipients.get_mut(r.index) else {
            continue;
        };
        let d = classify(&Outcome::Reply {
            stage: Stage::Rcpt,
            code: r.code,
            text: &r.text,
        });
        match d.class {
            // Accepted at RCPT, delivered only once the final dot was taken.
            Class::Delivered if a.ending == Ending::Delivered => {
                rcpt.state = RcptState::Delivered;
                delivered += 1;
            }
            Class::Delivered => {}
            Class::Permanent => {
                rcpt.state = RcptState::Failed {
                    reply: r.text.clone(),
                }
            }
            _ => keep_worst(&mut worst, d, &r.text),
        }
    }
    if let Some(out) = a.ending.outcome() {
        let d = classify(&out);
        let text = match &a.ending {
            Ending::Refused { text, .. } => text.clone(),
            Ending::NoFinalReply => b"no reply after the final dot".to_vec(),
            _ => b"connection lost".to_vec(),
        };
        env.possibly_duplicated |= d.possibly_duplicated;
        if d.class == Class::Permanent {
            for r in env.recipients.iter_mut() {
                if r.state == RcptState::Pending {
                    r.state = RcptState::Failed {
                        reply: text.clone(),
                    };
                }
            }
        } else {
            keep_worst(&mut worst, d, &text);
        }
    }
    let possibly_duplicated = a.ending == Ending::NoFinalReply;
    if env.is_finished() {
        return Settled {
            plan: Plan::Done,
            class: Class::Delivered,
            account_wide: false,
            delivered,
            possibly_duplicated,
        };
    }
    let (d, text) = worst.unwrap_or((
        Decision {
            class: Class::Temporary,
            scope: Scope::Message,
            possibly_duplicated: false,
        },
        b"not delivered".to_vec(),
    ));
    env.last_error = Some(LastError {
        class: d.class,
        text,
    });
    let plan = policy.after(d.class, env.attempts, 0, env.queued_at, now, jitter);
    if let Plan::RetryAt(at) = plan {
        env.next_attempt = at;
    }
    Settled {
        plan,
        class: d.class,
        account_wide: d.scope == Scope::Account,
        delivered,
        possibly_duplicated,
    }
}

/// Keeps the failure that asks for the longest wait: a rate limit over a plain deferral.
fn keep_worst(worst: &mut Option<(Decision, Vec<u8>)>, d: Decision, text: &[u8]) {
    let rank = |c: Class| match c {
        Class::RateLimited => 2,
        Class::CodeRefused => 1,
        _ => 0,
    };
    if worst
        .as_ref()
        .is_none_or(|(w, _)| rank(d.class) > rank(w.class))
    {
        *worst = Some((d, text.to_vec()));
    }
}
