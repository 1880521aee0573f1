//! End-to-end tests of the hub against real components: a nats-server with JetStream
//! started per test on a free port with a temp store, and SQLite files or fresh PostgreSQL
//! databases (see the `tests` crate's harness).

mod batching;
mod clear_fields;
mod cluster;
mod confidentiality;
mod consent;
mod demo;
mod envelopes;
mod faults;
mod keys;
mod oidc_login;
mod paging;
mod panics;
mod ledger;
mod limits;
mod policy;
mod pseudonyms;
mod receipts;
mod roles;
mod tls;
