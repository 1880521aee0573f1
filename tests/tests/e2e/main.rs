//! End-to-end tests of the hub against real components: a nats-server with JetStream
//! started per test on a free port with a temp store, and SQLite files or fresh PostgreSQL
//! databases (see the `tests` crate's harness).

mod batching;
mod broker_rights;
mod browser_harness;
mod casework;
mod clear_fields;
mod cluster;
mod confidentiality;
mod conformance;
mod consent;
mod consent_rollback;
mod console;
mod demo;
mod envelopes;
mod faults;
mod housing_casework;
mod idle;
mod idva_casework;
mod keys;
mod ledger;
mod ledger_counting;
mod limits;
mod marac_cycle;
mod metrics;
mod netns;
mod oidc_login;
mod oversize;
mod paging;
mod panics;
mod partnership_feed;
mod perpetrator_pathway;
mod policy;
mod pseudonyms;
mod ready;
mod receipts;
mod reciprocal_scheme;
mod roles;
mod rollback;
mod stream_identity;
mod tls;
mod upgrade;
mod witness_junk;
