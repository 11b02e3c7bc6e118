//! Fuzz target: the IMAP login phase (`ImapLogin`) fed arbitrary client bytes in
//! arbitrary chunks, with arbitrary login outcomes; see `qqmail_proxy_fuzz::drive`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qqmail_proxy::proto::imap::ImapLogin;

fuzz_target!(|data: &[u8]| {
    qqmail_proxy_fuzz::drive(data, ImapLogin::new);
});
