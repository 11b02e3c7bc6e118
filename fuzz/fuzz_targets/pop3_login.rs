//! Fuzz target: the POP3 login phase (`Pop3Login`) fed arbitrary client bytes in
//! arbitrary chunks, with arbitrary login outcomes; see `qqmail_proxy_fuzz::drive`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qqmail_proxy::proto::pop3::Pop3Login;

fuzz_target!(|data: &[u8]| {
    qqmail_proxy_fuzz::drive(data, Pop3Login::new);
});
