//! The store-and-forward queue (issue 12): a message a client handed over is kept on disk
//! until the upstream takes it, so a printer's scan survives QQ being down, slow, or
//! rate-limiting. This module knows nothing of sessions or listeners; arrows point down
//! into it.
//!
//! What is here (used by `[smtp] delivery = "queue" | "fallback"`: the session side is
//! `session::smtp::{queued, fallback}` and `session::queue`):
//! - [`store`]: the durable spool: `begin → write… → commit` (durable before 250), a
//!   scan at start (orphans removed, damage moved to `corrupt/`), list / get / update /
//!   remove, and the `ctl/` requests the `queue` commands leave for the server.
//! - [`classify`]: the one table: upstream outcome → Delivered | Temporary | RateLimited
//!   | CodeRefused | Permanent, with its scope (recipient, message, account).
//! - [`schedule`]: back-off, `max_age`, the rate-limit floor, the 535 pause, per-account
//!   pacing (`rate`) and `daily_limit`. Pure.
//! - [`dsn`]: the RFC 3464 bounce. Pure.
//!
//! # The body, byte for byte
//! A stored body is the message in SMTP transmission form: exactly the bytes sent after
//! the upstream's `354`, dot-stuffed (RFC 5321 §4.5.2), with CRLF as received, up to but
//! not including the final `.` line; delivery sends the file, then `.\r\n`. Stored
//! stuffed because the relay never unstuffs: it forwards the client's bytes (after the
//! optional From rewrite) as they come, so `fallback` copies into the queue exactly what
//! it sends, and a queued delivery sends the very bytes a relayed one would. The final
//! dot is left out so the deliverer can check the body's SHA-256 after streaming it and
//! send the dot only if it matches: a body damaged on disk is never delivered.
//!
//! # How the later steps use it
//! - **Session, `queue` mode**: after the last RCPT, `store.begin(NewMessage{account,
//!   sender (rewritten), null_sender, recipients}, now, SIZE=)` (a [`store::StoreError`]
//!   → `452 4.3.1`); the DATA chunks, gathered into 64 KiB batches, → `Writer::write`
//!   on the blocking pool; at the end,
//!   `spawn_blocking(commit)`, then `250 2.0.0 Ok: queued as ID`, then a wake-up to the
//!   account's deliverer (a `tokio::sync::Notify`). Any error or a client that leaves →
//!   the writer is dropped and nothing remains.
//! - **Session, `fallback` mode**: the same writer fed while relaying (no fsync yet). If
//!   the upstream answers 250 the writer is dropped; if [`classify::classify`] says
//!   Temporary / RateLimited / CodeRefused, `commit()` and answer 250 queued; a Permanent
//!   reply goes to the client as today and the writer is dropped.
//! - **Deliverer** (`deliver.rs`, one task per account): at start `Store::open` gives
//!   every message sorted by next attempt. For each due message: wait for the account's
//!   [`schedule::Pacer`] and [`schedule::DailyCap`], log in through `upstream::smtp`,
//!   send MAIL, RCPT for the *pending* recipients only, DATA, the body through a
//!   [`store::BodyCheck`], and `.` only if the check passes. Each reply goes through
//!   `classify`; delivered recipients are marked and the envelope rewritten at once
//!   (`Store::update`, so a crash never resends them); then [`schedule::Policy::after`]
//!   sets the next attempt or bounces; a finished message is removed (envelope first).
//!   A bounce is built by [`dsn::Bounce`] and itself queued with `null_sender` set.
//!   `possibly_duplicated` is set before retrying after [`classify::Outcome::NoFinalReply`].
//! - **CLI** `queue list|show` read with `Store::open_existing` + `list`/`get`;
//!   `queue retry|delete` call `Store::request`, which the server picks up with
//!   `take_requests` on a periodic scan (a few seconds) and applies between deliveries:
//!   one writer per queue, no lock needed. See [`store`].
//! - **Metrics**: `Store::used_bytes`, the scan's counts and ages, and the deliverer's
//!   counters labelled with [`classify::Class::as_str`].

pub mod classify;
pub mod deliver;
pub mod dsn;
pub mod metrics;
pub mod schedule;
pub mod store;
