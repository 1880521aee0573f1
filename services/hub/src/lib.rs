//! The `hub` command's library: everything `hub up`, `hub demo` and the end-to-end tests
//! share.
//!
//! - [`nats`]: finds (or installs) and runs a local nats-server with JetStream.
//! - [`partnership`]: writes a partnership's directory, policy and key files.
//! - [`local`]: starts a whole partnership on one machine: audit service first, then one
//!   service per agency.
//! - [`bench`]: `hub bench` (raw JetStream, the crypto limit and the whole hub in one run) and
//!   `hub serve` (one service as its own process).
//! - [`processes`]: a `hub serve` child process: started, killed as a crash would, restarted.
//! - [`audit_cli`]: `hub audit verify|list|query|prove|verify-proof`.
//! - [`demo`]: the scripted synthetic case, with the checks that it worked.

pub mod audit_cli;
pub mod bench;
pub mod demo;
pub mod ledger_bench;
pub mod local;
pub mod nats;
pub mod partnership;
pub mod processes;
