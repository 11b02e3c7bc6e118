//! IMAP login phase (placeholder).
