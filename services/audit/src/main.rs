//! Runs the audit service alone, configured from the environment.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    audit::malloc::tune();
    runtime::telemetry::init();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = audit::start(audit::Config::from_env()?, shutdown.clone()).await?;
    println!("audit service listening on http://{}", running.addr);
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    running.task.await?
}
