//! Integration tests: the proxy binary against fake TLS upstreams on 127.0.0.1, driven by
//! real clients. One test binary, so the suite links once.

mod activity;
mod admin;
mod cli;
mod fakes_imap_pop3;
mod fakes_smtp;
mod hardening;
mod imap;
mod local_tls;
mod mailin_peer;
mod pop3;
mod queue;
mod smoke;
mod smtp;
mod support;
