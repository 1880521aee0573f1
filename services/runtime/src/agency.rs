//! What makes a service one agency's service ([`Agency`]): its migrations, what it does with
//! what arrives, its routes and rules, its periodic work; the rows arrivals start
//! ([`ArrivalRows`]); and the loop that looks for missed deadlines and runs that work.

use std::{future::Future, sync::Arc};

use isp::Opened;
use tokio_util::sync::CancellationToken;

use crate::{
    auth,
    chronology,
    console,
    ctx::Ctx,
    db::{Migration, Tx},
    deadlines,
};

/// What makes a service one agency's service rather than another's.
pub trait Agency: Send + Sync + 'static {
    /// Migrations of the service's own tables (versions 100 and up; the runtime uses 1-99).
    fn migrations(&self) -> Vec<Migration> {
        Vec::new()
    }

    /// Domain work for an envelope that passed every check, inside the transaction that
    /// stores it in the inbox: it commits, or nothing does and the message is redelivered.
    fn on_receive(&self, ctx: &Ctx, tx: &mut Tx, opened: &Opened) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Domain work for envelopes stored together in one inbox transaction, in stream order:
    /// by default [`Agency::on_receive`] for each. A service whose work is rows of its own
    /// overrides it to write a batch's rows in one statement per table; the deadlines and
    /// chronology entries it adds to `rows` are written with the inbox's own, in one
    /// statement each, after it returns (in the same transaction). Before handling anything
    /// that may meet or cancel a deadline, it calls `rows.flush(tx)`.
    fn on_receive_batch(&self, ctx: &Ctx, tx: &mut Tx, opened: &[&Opened], rows: &mut ArrivalRows) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move {
            // What this service does per envelope may meet or cancel what arrived before it.
            rows.flush(tx).await?;
            for o in opened {
                self.on_receive(ctx, tx, o).await?;
            }
            Ok(())
        }
    }

    /// The service's own HTTP routes, merged with the generic API.
    fn routes(&self) -> axum::Router<Ctx> {
        axum::Router::new()
    }

    /// Who may call each of [`Agency::routes`]: a route without a rule answers nobody.
    fn rules(&self) -> &'static [auth::Rule] {
        &[]
    }

    /// The service's own console pages (among [`Agency::routes`]) for the navigation, after
    /// the pages every agency has ([`crate::console::pages::NAV`]).
    fn nav(&self) -> &'static [console::Nav] {
        &[]
    }

    /// Periodic work of the service's own, run after each look for missed deadlines
    /// ([`tick_loop`]): e.g. an IDVA service checking the consent its open cases
    /// rely on still holds.
    fn on_tick(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// Rows that arrivals start, gathered over an inbox transaction and written together.
#[derive(Debug, Default)]
pub struct ArrivalRows {
    pub deadlines: Vec<deadlines::Deadline>,
    pub chronology: Vec<chronology::Entry>,
}

impl ArrivalRows {
    /// Writes what is gathered so far (one statement per table) and empties it. Called before
    /// anything in the transaction that may meet or cancel those deadlines (a revocation in
    /// the same batch as the referral it revokes), and at the end.
    pub async fn flush(&mut self, tx: &mut Tx) -> sqlx::Result<()> {
        let mut batch = crate::db::Batch::on(tx);
        deadlines::set_many_into(&mut batch, &std::mem::take(&mut self.deadlines));
        chronology::add_many_into(&mut batch, &std::mem::take(&mut self.chronology));
        batch.run(tx).await
    }
}

/// An agency with no domain behaviour beyond the generic inbox (used where a partnership
/// runs an agency of a role that has no service crate, and in tests).
pub struct Plain;

impl Agency for Plain {
    async fn on_receive(&self, _: &Ctx, _: &mut Tx, _: &Opened) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Looks for missed deadlines every [`crate::config::Config::deadline_check_every`], then runs the
/// agency's own periodic work ([`Agency::on_tick`]).
pub async fn tick_loop<A: Agency>(ctx: Ctx, agency: Arc<A>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(ctx.config.deadline_check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        // A database or broker outage is not the end of the service: the next tick retries.
        if let Err(e) = deadlines::fire(&ctx).await {
            tracing::warn!(error = %e, "looking for missed deadlines failed; will retry");
        }
        if let Err(e) = agency.on_tick(&ctx).await {
            tracing::warn!(error = %e, "the service's periodic work failed; will retry");
        }
    }
}

