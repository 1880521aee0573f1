//! The pathway's own pseudonym of a man it works with (`p-...`, [`isp::directory::own_ref`]).
//!
//! A pathway holds no subject key: the policy keeps it out of matching people across
//! agencies, and what reaches it names the survivor by a link token only. It still has to
//! know a man referred twice, by the same referrer or another, and to find his cases when he
//! asks for his data. It already holds his name and date of birth (the referral carries them,
//! sealed to it), so it keeps a pseudonym of them under a key of its own: made once, at
//! random, sealed to the agency's own age key in its database (so a copied database file
//! does not give it away, and a key rotation keeps it readable). The pseudonym never travels
//! and means nothing anywhere else; the survivor's references are untouched.

use runtime::{Ctx, Tx};
use sqlx::Row as _;

/// The pathway's pseudonym key, made on first use (in `tx`; two services racing to make it
/// both end with the one stored first).
pub async fn key(ctx: &Ctx, tx: &mut Tx) -> anyhow::Result<[u8; 32]> {
    if let Some(key) = stored(ctx, tx).await? {
        return Ok(key);
    }
    let fresh = isp::AgencyKeys::generate_subject_key();
    let sealed = ctx.seal_at_rest(&hex::encode(fresh))?;
    sqlx::query("INSERT INTO pathway_ref_key (id, sealed_key, created_at_ms) VALUES (1, $1, $2) ON CONFLICT DO NOTHING")
        .bind(&sealed)
        .bind(ctx.config.clock.now_ms())
        .execute(&mut **tx)
        .await?;
    stored(ctx, tx).await?.ok_or_else(|| anyhow::anyhow!("the pathway's pseudonym key was not stored"))
}

async fn stored(ctx: &Ctx, tx: &mut Tx) -> anyhow::Result<Option<[u8; 32]>> {
    let Some(row) = sqlx::query("SELECT sealed_key FROM pathway_ref_key WHERE id = 1").fetch_optional(&mut **tx).await? else { return Ok(None) };
    let opened = ctx.isp().keys.open_at_rest(&row.try_get::<String, _>("sealed_key")?)?;
    let bytes = hex::decode(opened.trim()).map_err(|_| anyhow::anyhow!("the pathway's pseudonym key is not hex"))?;
    Ok(Some(bytes.try_into().map_err(|_| anyhow::anyhow!("the pathway's pseudonym key is not 32 bytes"))?))
}

/// His pseudonym at this pathway; None when the referral did not give a name and a date of
/// birth it can be made of (he then cannot be recognised again, and says so on his case).
pub fn of(key: &[u8; 32], full_name: &str, date_of_birth: &str) -> Option<String> {
    isp::directory::own_ref(key, full_name, date_of_birth).ok()
}

/// Whether `s` is of the pseudonym's grammar (`p-` and 32 lowercase hex digits).
pub fn is_ref(s: &str) -> bool {
    isp::directory::is_own_ref(s)
}

/// What a path's reference must be, for an error that never repeats what was given.
pub const GRAMMAR: &str = "a person's reference at this pathway: p- and 32 lowercase hex digits";
