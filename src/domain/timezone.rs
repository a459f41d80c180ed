//! timezone.
