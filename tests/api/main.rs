//! The API integration suite: one binary, one module per object, each
//! starting the real server on port 0 with a temp data folder.

mod common;

mod abuse;
mod admin;
mod campaign;
mod carrier;
mod cli;
mod codes;
mod crash;
mod delivery;
mod faults;
mod inbound;
mod keyword;
mod limits;
mod list;
mod mail;
mod media;
mod mms;
mod nodes;
mod privacy;
mod promo;
mod protocol;
mod smpp;
mod system;
mod tls;
mod transaction;
mod transfer;
mod user;
mod webhooks;
