//! Secret values (authorization codes, local passwords): zeroized on drop, printed as `***`.
//!
//! Every credential that crosses the proxy lives in a [`Secret`] from the moment it is
//! decoded until it is dropped, so that `Debug`, `Display`, error chains and panics can
//! never show it. The bytes are wiped when the value goes away.

use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// A secret byte string. `Debug` and `Display` print `***`; the memory is zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes as a secret (the caller's buffer is moved, not copied).
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// Copies a slice into a new secret.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Secret::new(bytes.to_vec())
    }

    /// The secret's bytes. Call only where the bytes are about to be used (hashing,
    /// sending upstream), never to format them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, when it is valid UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::from_slice(s.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Overwrites a consumed input region (for example an `AUTH PLAIN <base64>` line) before
/// the buffer that held it is advanced past or reused.
pub fn wipe(bytes: &mut [u8]) {
    bytes.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_bytes() {
        let s = Secret::from("abcdefghijklmnop");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), b"abcdefghijklmnop");
    }

    #[test]
    fn wipe_zeroes_in_place() {
        let mut v = b"AUTH PLAIN AGZvbwBiYXI=".to_vec();
        wipe(&mut v);
        assert!(v.iter().all(|&b| b == 0));
    }
}
