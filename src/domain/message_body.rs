//! message_body.
