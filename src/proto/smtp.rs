//! SMTP login phase (placeholder).
