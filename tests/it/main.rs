//! End-to-end tests: the real `amanat` binary on a loopback port, real files, the stock
//! `age` CLI, real SIGKILLs. One test binary so the suite links once.

mod common;

mod attested;
mod bench;
mod browser;
mod codename_keys;
mod contract;
mod crash;
mod demo;
mod deploy;
mod disclose;
mod fieldkit;
mod flood;
mod followup;
mod hardening;
mod hostile;
mod intake;
mod keygen;
mod layers;
mod limits;
mod log;
mod media;
mod pages;
mod quorum;
mod replica;
mod resumable;
mod review;
mod seizure;
mod send;
mod startup;
mod timestamp;
mod witness;
