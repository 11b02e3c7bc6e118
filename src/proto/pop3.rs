//! POP3 login phase (placeholder).
