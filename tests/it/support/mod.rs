//! Test support: a throw-away CA, fake upstream servers and a handle on the proxy process.
#![allow(dead_code)]

pub mod ca;
pub mod config;
pub mod imap;
pub mod pop3;
pub mod proxy;
pub mod sent_imap;
pub mod smtp;
pub mod tools;
pub mod upstream;
