//! Tracing set-up. Log lines carry envelope ids, kinds, agencies, rules and reason codes;
//! the code never puts a payload field, a name, an address, a phone number or a key in one.

/// Installs a formatter honouring `RUST_LOG` (default `info`), writing to stderr so a
/// command's own output stays clean. Safe to call twice.
pub fn init() {
    init_with_default("info,sqlx=warn,async_nats=warn");
}

/// As [`init`], with another default filter when `RUST_LOG` is unset.
pub fn init_with_default(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
}
