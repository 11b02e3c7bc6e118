//! Integration tests: the proxy binary against fake TLS upstreams on 127.0.0.1, driven by
//! real clients. One test binary, so the suite links once.

mod fakes_imap_pop3;
mod fakes_smtp;
mod hardening;
mod smoke;
mod support;
