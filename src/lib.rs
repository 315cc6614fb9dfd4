//! amanat: a secure intake for testimony and evidence of torture and state violence.
//! Everything is encrypted on arrival to the coalition's age keys; the server keeps only
//! ciphertext. See DESIGN.md for the architecture; each module below is one of its pieces.
#![forbid(unsafe_code)]

pub mod admin;
pub mod attestation;
pub mod bundle;
pub mod codename;
pub mod config;
pub mod durable;
pub mod envelope;
pub mod fieldkit;
pub mod form;
pub mod i18n;
pub mod intake;
pub mod keys;
pub mod log;
pub mod process;
pub mod record;
pub mod replication;
pub mod review;
pub mod serve;
pub mod store;
pub mod witness;
