//! The `qqmail-proxy` command.
#![forbid(unsafe_code)]

fn main() {}
