//! Fuzz target: SASL decoding (`decode_response`, `decode_plain`). Never panics; a
//! decoded PLAIN message names a non-empty user and re-encodes to an equivalent blob.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qqmail_proxy::proto::sasl::{self, SaslError};
use qqmail_proxy::secrets::Secret;

fuzz_target!(|data: &[u8]| {
    let response = sasl::decode_response(data);
    let plain = sasl::decode_plain(data);
    match (&response, &plain) {
        // PLAIN decoding is response decoding plus parsing: the errors must agree.
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("response failed ({e}) but PLAIN succeeded"),
        (Ok(_), Err(e)) => assert_eq!(*e, SaslError::BadPlain),
        (Ok(_), Ok(creds)) => {
            assert!(!creds.user.is_empty(), "PLAIN with an empty user accepted");
            // The user name went through lossy UTF-8, so compare after one round trip.
            let again = sasl::encode_plain(&creds.user, &creds.password);
            let back = sasl::decode_plain(again.expose()).expect("re-encoded PLAIN decodes");
            assert_eq!(back.user, creds.user);
            assert_eq!(back.password, creds.password);
        }
    }
    // Any bytes survive the base64 round trip.
    let encoded = sasl::encode(data);
    let decoded = sasl::decode_response(encoded.expose()).expect("own base64 decodes");
    assert_eq!(decoded, Secret::from_slice(data));
});
