//! Runs the marac service alone, configured from the environment (see runtime::config).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::telemetry::init();
    let config = runtime::Config::from_env()?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = runtime::start(config, marac::Marac, shutdown.clone()).await?;
    println!("marac service listening on http://{}", running.addr);
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    running.task.await?
}
