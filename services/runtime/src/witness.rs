//! The agency as a witness of the audit ledger. It reads every message on the checkpoint
//! subject, in stream order from where it stopped (its position is kept in its database), so
//! nothing published after a real checkpoint can hide it. A checkpoint is a C2SP signed note
//! ([`isp::checkpoint`]); streams from before notes also hold the legacy JSON form, which it
//! still reads. A message that is not a checkpoint signed by the partnership's IG office (not
//! of the grammar, a bad signature, another signer) proves nothing: anyone with publish rights
//! could have sent it, so it is ignored and counted (`ignored` in `GET /witness`), never
//! alerted on. For each IG-signed checkpoint the witness asks the audit service for a
//! consistency proof from the last checkpoint it accepted. One that shrinks the tree, forks it
//! at the same size or has no valid proof means the audit operator rewrote history: the
//! witness keeps the evidence (the note), raises an alert (`GET /witness`, an error log line)
//! and keeps its last good checkpoint. A checkpoint it accepts it cosigns (C2SP
//! cosignature/v1, with the agency's signing key under the agency id): `GET /witness` shows it
//! as `last_accepted.cosigned`, the note with the witness's signature line appended.

use std::time::Duration;

use anyhow::Context as _;
use axum::{Json, Router, extract::State, routing::get};
use async_nats::jetstream::stream::DirectGetErrorKind;
use isp::{
    Directory,
    checkpoint::{self, CHECKPOINT_STREAM, CHECKPOINT_SUBJECT, CONSISTENCY_SUBJECT, Checkpoint},
    merkle,
};
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::{ctx::Ctx, db::Migration, error::ApiError};

/// How long a witness waits for the audit service's consistency proof.
const CONSISTENCY_WAIT: Duration = Duration::from_secs(10);

/// How often the witness looks for a new checkpoint.
const EVERY: Duration = Duration::from_secs(1);

pub fn migrations() -> Vec<Migration> {
    vec![
        Migration { version: 50, description: "witness", sql: include_str!("../migrations/0050_witness.sql") },
        Migration { version: 51, description: "witness position", sql: include_str!("../migrations/0051_witness_position.sql") },
        Migration { version: 52, description: "witness cosignature", sql: include_str!("../migrations/0052_witness_cosignature.sql") },
    ]
}

pub fn routes() -> Router<Ctx> {
    Router::new().route("/witness", get(status))
}

/// What a check of a message on the checkpoint subject found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No checkpoint published yet, or the same one as last time (or an older one accepted
    /// before).
    Nothing,
    /// Not a checkpoint signed by the partnership's IG office: why (no content of it).
    Ignored(String),
    /// The first checkpoint seen (trusted on first use), or one consistent with the last.
    Accepted(u64),
    /// An alert was raised.
    Alert(String),
}

/// How many messages of the checkpoint stream one look reads at most.
const BATCH: usize = 256;

pub async fn watch_loop(ctx: Ctx, shutdown: CancellationToken) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        if let Err(e) = check_new(&ctx).await {
            tracing::debug!(error = %e, "witness check did not complete; retrying");
        }
    }
}

/// Checks every message on the checkpoint subject since the last one checked (up to
/// [`BATCH`]), in order, moving the kept position past each once it is dealt with. Returns
/// what each found.
pub async fn check_new(ctx: &Ctx) -> anyhow::Result<Vec<Outcome>> {
    let stream = ctx.jetstream.get_stream_no_info(CHECKPOINT_STREAM).await.context("naming the checkpoint stream")?;
    let mut next = match position(ctx).await? {
        Some(next) => next,
        None => start_position(ctx, &stream).await?,
    };
    let mut outcomes = Vec::new();
    while outcomes.len() < BATCH {
        let message = match stream.direct_get_next_for_subject(CHECKPOINT_SUBJECT, Some(next)).await {
            Ok(m) => m,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
            Err(e) => return Err(anyhow::Error::new(e).context("reading the checkpoint stream")),
        };
        // An error (the audit service not answering, the database) leaves the position here:
        // the same message is checked again next time.
        let outcome = check(ctx, &message.payload).await?;
        next = message.sequence + 1;
        save_position(ctx, next, match &outcome {
            Outcome::Ignored(why) => Some(why),
            _ => None,
        })
        .await?;
        if let Outcome::Ignored(why) = &outcome {
            tracing::warn!(stream_seq = message.sequence, reason = %why, "a message on the checkpoint subject is not a checkpoint signed by the IG office; ignored");
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The next stream sequence to read, if the witness has a position.
async fn position(ctx: &Ctx) -> anyhow::Result<Option<u64>> {
    let row = sqlx::query("SELECT next_seq FROM witness_position WHERE id = 1").fetch_optional(&ctx.pool).await?;
    Ok(row.map(|r| r.try_get::<i64, _>("next_seq")).transpose()?.map(|n| n as u64))
}

/// Where a witness with no position starts: the beginning of the stream, or, for one that
/// accepted checkpoints before it kept a position (it read only the latest), the latest.
async fn start_position(ctx: &Ctx, stream: &async_nats::jetstream::stream::Stream<()>) -> anyhow::Result<u64> {
    let witnessed = sqlx::query("SELECT 1 AS one FROM witnessed_checkpoint LIMIT 1").fetch_optional(&ctx.pool).await?.is_some();
    let start = if witnessed {
        match stream.direct_get_last_for_subject(CHECKPOINT_SUBJECT).await {
            Ok(m) => m.sequence,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => 1,
            Err(e) => return Err(anyhow::Error::new(e).context("reading the checkpoint stream")),
        }
    } else {
        1
    };
    sqlx::query("INSERT INTO witness_position (id, next_seq, ignored, last_ignored_reason, last_ignored_at_ms) VALUES (1, $1, 0, '', 0)")
        .bind(start as i64)
        .execute(&ctx.pool)
        .await?;
    Ok(start)
}

async fn save_position(ctx: &Ctx, next: u64, ignored: Option<&String>) -> anyhow::Result<()> {
    match ignored {
        None => sqlx::query("UPDATE witness_position SET next_seq = $1 WHERE id = 1").bind(next as i64).execute(&ctx.pool).await?,
        Some(why) => {
            sqlx::query("UPDATE witness_position SET next_seq = $1, ignored = ignored + 1, last_ignored_reason = $2, last_ignored_at_ms = $3 WHERE id = 1")
                .bind(next as i64)
                .bind(why.as_str())
                .bind(isp::now_ms())
                .execute(&ctx.pool)
                .await?
        }
    };
    Ok(())
}

/// A message on the checkpoint subject read as a checkpoint the IG office signed: the
/// checkpoint, its root, and the evidence to keep of it (the note; for the legacy form, the
/// JSON as received). Otherwise why it is not one, without any of its content.
fn read(payload: &[u8], directory: &Directory) -> Result<(Checkpoint, merkle::Hash, String), String> {
    let text = std::str::from_utf8(payload).map_err(|_| "not a checkpoint: not valid UTF-8".to_owned())?;
    if text.starts_with('{') {
        let checkpoint = serde_json::from_str::<Checkpoint>(text).map_err(|_| "not a checkpoint".to_owned())?;
        let root = checkpoint.verify(directory).map_err(|e| format!("not signed by the partnership's IG office: {e}"))?;
        let evidence = if checkpoint.is_legacy() { text.to_owned() } else { checkpoint.note.clone() };
        return Ok((checkpoint, root, evidence));
    }
    let checkpoint = Checkpoint::from_note(text, directory).map_err(|e| e.to_string())?;
    let root = checkpoint.root_bytes().map_err(|e| e.to_string())?;
    Ok((checkpoint, root, text.to_owned()))
}

/// Checks one message of the checkpoint subject against the last accepted checkpoint.
pub async fn check(ctx: &Ctx, payload: &[u8]) -> anyhow::Result<Outcome> {
    // What the IG office did not sign proves nothing about the ledger: ignored, not alerted.
    let (checkpoint, new_root, body) = match read(payload, &ctx.isp().directory) {
        Ok(read) => read,
        Err(why) => return Ok(Outcome::Ignored(why)),
    };
    let body = body.as_str();
    let size = checkpoint.tree_size;
    let last = sqlx::query("SELECT tree_size, root FROM witnessed_checkpoint ORDER BY tree_size DESC LIMIT 1").fetch_optional(&ctx.pool).await?;
    let Some(last) = last else { return accept(ctx, &checkpoint, body).await };
    let last_size = last.try_get::<i64, _>("tree_size")? as u64;
    let last_root: String = last.try_get("root")?;
    if size == last_size {
        if checkpoint.root == last_root {
            return Ok(Outcome::Nothing);
        }
        return alert(ctx, size, &format!("FORK: a second checkpoint at tree size {size} with a different root"), body).await;
    }
    if size < last_size {
        // A checkpoint accepted before, published again, is no rollback.
        let known = sqlx::query("SELECT root FROM witnessed_checkpoint WHERE tree_size = $1").bind(size as i64).fetch_optional(&ctx.pool).await?;
        if known.map(|r| r.try_get::<String, _>("root")).transpose()?.is_some_and(|root| root == checkpoint.root) {
            return Ok(Outcome::Nothing);
        }
        return alert(ctx, size, &format!("ROLLBACK: checkpoint at tree size {size} after one at {last_size}"), body).await;
    }
    let request = json!({"first": last_size, "second": size}).to_string();
    // The answer comes to a subject under this agency's inbox that the audit service may
    // publish to (`{inbox}.consistency.>`), not to a general reply right: a broker user with
    // response rights has every message delivered to it tracked as a reply it may answer,
    // which for the audit's consumer grows without end.
    let client = ctx.jetstream.client();
    let reply_to = format!("{}.consistency.{}", crate::transport::inbox_prefix(ctx.agency()), uuid::Uuid::now_v7().simple());
    let mut answers = client.subscribe(reply_to.clone()).await.context("listening for the consistency proof")?;
    client
        .publish_with_reply(CONSISTENCY_SUBJECT, reply_to, request.into())
        .await
        .context("asking the audit service for a consistency proof")?;
    let reply = tokio::time::timeout(CONSISTENCY_WAIT, futures::StreamExt::next(&mut answers))
        .await
        .context("the audit service did not answer the consistency request in time")?
        .context("the consistency answer's subscription ended")?;
    let _ = answers.unsubscribe().await;
    let answer: Value = serde_json::from_slice(&reply.payload).context("the consistency answer is not JSON")?;
    let proof: Option<Vec<merkle::Hash>> = answer["proof"]
        .as_array()
        .and_then(|a| a.iter().map(|h| h.as_str().and_then(|h| hex::decode(h).ok()).and_then(|b| b.try_into().ok())).collect());
    let last_root_bytes: Option<merkle::Hash> = hex::decode(&last_root).ok().and_then(|b| b.try_into().ok());
    let consistent = match (proof, last_root_bytes) {
        (Some(proof), Some(old)) => merkle::verify_consistency(last_size, size, &old, &new_root, &proof),
        _ => false,
    };
    if !consistent {
        let why = answer["error"].as_str().map(|e| format!(" (the audit service said: {e})")).unwrap_or_default();
        return alert(
            ctx,
            size,
            &format!("INCONSISTENT: checkpoint at tree size {size} is not an append-only extension of the one at {last_size}{why}"),
            body,
        )
        .await;
    }
    accept(ctx, &checkpoint, body).await
}

/// Keeps an accepted checkpoint and cosigns it: the witness's statement (cosignature/v1)
/// that, at this time, this is the largest tree head of the IG office's ledger it has seen
/// consistent. A legacy checkpoint has no note to cosign.
async fn accept(ctx: &Ctx, checkpoint: &Checkpoint, body: &str) -> anyhow::Result<Outcome> {
    let cosignature = match checkpoint.is_legacy() {
        true => String::new(),
        false => checkpoint::cosign(&ctx.isp().keys, &checkpoint.note, (isp::now_ms() / 1000) as u64)?,
    };
    sqlx::query("INSERT INTO witnessed_checkpoint (tree_size, root, body, checked_at_ms, cosignature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
        .bind(checkpoint.tree_size as i64)
        .bind(&checkpoint.root)
        .bind(body)
        .bind(isp::now_ms())
        .bind(&cosignature)
        .execute(&ctx.pool)
        .await?;
    tracing::debug!(tree_size = checkpoint.tree_size, "ledger checkpoint witnessed");
    Ok(Outcome::Accepted(checkpoint.tree_size))
}

async fn alert(ctx: &Ctx, tree_size: u64, what: &str, body: &str) -> anyhow::Result<Outcome> {
    // The same evidence is recorded once, however often the witness looks at it.
    let seen = sqlx::query("SELECT 1 AS one FROM witness_alert WHERE tree_size = $1 AND checkpoint = $2")
        .bind(tree_size as i64)
        .bind(body)
        .fetch_optional(&ctx.pool)
        .await?;
    if seen.is_none() {
        let next: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM witness_alert").fetch_one(&ctx.pool).await?.try_get("n")?;
        sqlx::query("INSERT INTO witness_alert (id, raised_at_ms, tree_size, what, checkpoint) VALUES ($1, $2, $3, $4, $5)")
            .bind(next)
            .bind(isp::now_ms())
            .bind(tree_size as i64)
            .bind(what)
            .bind(body)
            .execute(&ctx.pool)
            .await?;
        tracing::error!(tree_size, alert = what, "LEDGER WITNESS ALERT: the audit ledger's history was rewritten or its checkpoint is forged");
    }
    Ok(Outcome::Alert(what.to_owned()))
}

/// What the witness keeps of a checkpoint, for a reader: the note's text as it is (a
/// transparency-log tool reads it), or, for one of the legacy form, its JSON.
fn evidence(body: &str) -> Value {
    match body.starts_with('{') {
        true => serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        false => Value::String(body.to_owned()),
    }
}

/// `GET /witness`: the last accepted checkpoint (with its note and the note cosigned by this
/// witness, null for a legacy one), the alerts (each with the checkpoint it is about: the note,
/// or the legacy JSON), and the position and count of ignored messages.
pub(crate) async fn status(State(ctx): State<Ctx>) -> Result<Json<Value>, ApiError> {
    let last = sqlx::query("SELECT tree_size, root, body, checked_at_ms, cosignature FROM witnessed_checkpoint ORDER BY tree_size DESC LIMIT 1")
        .fetch_optional(&ctx.pool)
        .await?;
    let last = match last {
        Some(r) => {
            let body: String = r.try_get("body")?;
            let cosignature: String = r.try_get("cosignature")?;
            let note = (!body.starts_with('{')).then(|| body.clone());
            let cosigned = note.as_ref().filter(|_| !cosignature.is_empty()).map(|n| format!("{n}{cosignature}"));
            json!({
                "tree_size": r.try_get::<i64, _>("tree_size")?, "root": r.try_get::<String, _>("root")?,
                "checked_at_ms": r.try_get::<i64, _>("checked_at_ms")?, "note": note, "cosigned": cosigned,
            })
        }
        None => Value::Null,
    };
    let alerts = sqlx::query("SELECT id, raised_at_ms, tree_size, what, checkpoint FROM witness_alert ORDER BY id").fetch_all(&ctx.pool).await?;
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|r| {
            Ok::<_, sqlx::Error>(json!({
                "id": r.try_get::<i64, _>("id")?, "raised_at_ms": r.try_get::<i64, _>("raised_at_ms")?,
                "tree_size": r.try_get::<i64, _>("tree_size")?, "what": r.try_get::<String, _>("what")?,
                "checkpoint": evidence(&r.try_get::<String, _>("checkpoint")?),
            }))
        })
        .collect::<Result<_, _>>()?;
    let position = sqlx::query("SELECT next_seq, ignored, last_ignored_reason, last_ignored_at_ms FROM witness_position WHERE id = 1").fetch_optional(&ctx.pool).await?;
    let (next_seq, ignored, last_ignored) = match position {
        Some(r) => {
            let reason: String = r.try_get("last_ignored_reason")?;
            let last = (!reason.is_empty()).then(|| json!({"reason": reason, "at_ms": r.try_get::<i64, _>("last_ignored_at_ms").unwrap_or_default()}));
            (r.try_get::<i64, _>("next_seq")?, r.try_get::<i64, _>("ignored")?, last)
        }
        None => (1, 0, None),
    };
    Ok(Json(json!({"last_accepted": last, "alerts": alerts, "ignored": ignored, "last_ignored": last_ignored, "next_stream_seq": next_seq})))
}

#[cfg(test)]
mod tests {
    use isp::{AgencyKeys, Role, directory::generate_partnership};

    use super::*;

    fn partnership() -> (Directory, AgencyKeys, AgencyKeys) {
        let (directory, mut keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
        let housing = keys.pop().unwrap();
        (directory, keys.pop().unwrap(), housing)
    }

    #[test]
    fn a_note_signed_by_the_ig_office_is_read_and_kept_as_its_text() {
        let (directory, ig, _) = partnership();
        let c = Checkpoint::sign(&ig, 7, &[3; 32], 1);
        let (read_back, root, evidence) = read(c.note.as_bytes(), &directory).unwrap();
        assert_eq!((read_back.tree_size, root, evidence.as_str()), (7, [3; 32], c.note.as_str()));
        assert_eq!(super::evidence(&evidence), Value::String(c.note.clone()));
        // Its JSON view (as the audit service stores it) is read too, and kept as the note.
        let (_, root, evidence) = read(&serde_json::to_vec(&c).unwrap(), &directory).unwrap();
        assert_eq!((root, evidence), ([3; 32], c.note));
    }

    #[test]
    fn what_the_ig_office_did_not_sign_is_not_read_and_the_reason_repeats_none_of_it() {
        let (directory, ig, housing) = partnership();
        let c = Checkpoint::sign(&ig, 7, &[3; 32], 1);
        let by_housing = Checkpoint::sign(&housing, 8, &[3; 32], 1);
        for (payload, why) in [
            (b"not a checkpoint {".to_vec(), "not a valid ledger checkpoint"),
            (b"{\"Jane Doe\": 1}".to_vec(), "not a checkpoint"),
            ([c.note.as_bytes(), &[0xff]].concat(), "not valid UTF-8"),
            (by_housing.note.clone().into_bytes(), "origin is not the ledger of the partnership's IG office"),
            (serde_json::to_vec(&by_housing).unwrap(), "not signed by the partnership's IG office"),
            (c.note.replace("\n7\n", "\n8\n").into_bytes(), "does not verify"),
            (format!("{}\n", c.note).into_bytes(), "no signature line"),
        ] {
            let reason = read(&payload, &directory).map(|_| ()).unwrap_err();
            assert!(reason.contains(why) && !reason.contains("Jane"), "{reason}");
        }
    }
}
