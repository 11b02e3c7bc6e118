//! Fuzz target: the SMTP login phase (`SmtpLogin`) fed arbitrary client bytes in
//! arbitrary chunks, with arbitrary login outcomes; see `qqmail_proxy_fuzz::drive`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qqmail_proxy::proto::smtp::SmtpLogin;

fuzz_target!(|data: &[u8]| {
    qqmail_proxy_fuzz::drive(data, SmtpLogin::new);
});
