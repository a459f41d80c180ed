//! inbound rows.
