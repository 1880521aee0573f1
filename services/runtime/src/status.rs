//! Where a disclosure stands, at each end, as enums from the API to the database: the
//! sender's `sent.status` ([`Disclosure`]) and the recipient's `inbox.status` ([`Arrival`]).
//! Code compares and binds these, never string literals; the codes are what the tables and
//! the JSON API hold.

crate::codes!(
    /// A disclosure this agency made (`sent.status`), moved on by the sender's own steps and
    /// by the recipient's receipts ([`Disclosure::moves_to`]).
    Disclosure {
        Queued = "queued": "Queued",
        Published = "published": "Sent",
        Denied = "denied": "Refused by the protocol",
        Stopped = "stopped": "Stopped before sending",
        SetAside = "set_aside": "Set aside, not sent",
        Received = "received": "Delivered",
        Opened = "opened": "Opened",
        Accepted = "accepted": "Accepted",
        Declined = "declined": "Declined",
        Closed = "closed": "Closed",
        Revoked = "revoked": "Revoked",
        RevocationConfirmed = "revocation_confirmed": "Revocation confirmed"
    }
);

impl Disclosure {
    /// How far a receipt has taken it: receipts only move a disclosure forward.
    fn rank(self) -> u8 {
        match self {
            Disclosure::Queued | Disclosure::Published => 0,
            Disclosure::Received => 1,
            Disclosure::Opened => 2,
            Disclosure::Accepted | Disclosure::Declined => 3,
            Disclosure::Closed => 4,
            Disclosure::Revoked => 5,
            Disclosure::RevocationConfirmed => 6,
            // Never published: no receipt can come for these.
            Disclosure::Denied | Disclosure::Stopped | Disclosure::SetAside => 0,
        }
    }

    /// Whether a receipt giving `next` moves a disclosure that stands at `self`: an `opened`
    /// that arrives after `accepted` does not undo it; after a revocation only its
    /// confirmation does; nothing moves one never sent, or whose revocation is confirmed.
    pub fn moves_to(self, next: Disclosure) -> bool {
        match self {
            Disclosure::Revoked => next == Disclosure::RevocationConfirmed,
            Disclosure::Stopped | Disclosure::SetAside | Disclosure::Denied | Disclosure::RevocationConfirmed => false,
            _ => next.rank() > self.rank() || (next.rank() == 3 && self.rank() == 3),
        }
    }

    /// Revoked by the sender (whether or not the recipient has confirmed it yet).
    pub fn is_revoked(self) -> bool {
        matches!(self, Disclosure::Revoked | Disclosure::RevocationConfirmed)
    }

    /// Never left this agency: refused by the protocol, or stopped or set aside before publishing.
    pub fn never_sent(self) -> bool {
        matches!(self, Disclosure::Denied | Disclosure::Stopped | Disclosure::SetAside)
    }
}

crate::codes!(
    /// A disclosure this agency received (`inbox.status`), moved on by its staff's receipts.
    Arrival {
        New = "new": "New",
        Opened = "opened": "Opened",
        Received = "received": "Acknowledged as received",
        Accepted = "accepted": "Accepted",
        Declined = "declined": "Declined",
        Closed = "closed": "Closed",
        Revoked = "revoked": "Revoked by its sender"
    }
);

impl Arrival {
    /// Nothing more is owed on it: answered for good, or withdrawn by its sender.
    pub fn is_settled(self) -> bool {
        matches!(self, Arrival::Declined | Arrival::Closed | Arrival::Revoked)
    }
}

/// Marks a disclosure this agency made revoked by its sender (`by`: the staff member, empty
/// for the service itself), in the caller's transaction with the revocation's send.
pub async fn revoke_sent(tx: &mut crate::db::Tx, envelope_id: &str, reason: &str, by: &str, at_ms: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE sent SET status = $1, status_reason = $2, updated_at_ms = $3, status_by = $4 WHERE envelope_id = $5")
        .bind(Disclosure::Revoked.code())
        .bind(reason)
        .bind(at_ms)
        .bind(by)
        .bind(envelope_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a staff member's answer to a received disclosure on its inbox row, in the caller's
/// transaction with the receipt it sends.
pub async fn answer_arrival(tx: &mut crate::db::Tx, envelope_id: &str, status: Arrival, staff_id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE inbox SET status = $1, status_by = $2 WHERE envelope_id = $3").bind(status.code()).bind(staff_id).bind(envelope_id).execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Disclosure::{self, *};

    #[test]
    fn receipts_only_move_a_disclosure_forward() {
        assert!(Published.moves_to(Received));
        assert!(Received.moves_to(Opened));
        assert!(!Accepted.moves_to(Opened), "an opened after accepted does not undo it");
        assert!(Accepted.moves_to(Declined), "a decision may be changed");
        assert!(Revoked.moves_to(RevocationConfirmed));
        assert!(!Revoked.moves_to(Closed), "after a revocation only its confirmation moves it");
        for never in [Stopped, SetAside, Denied, RevocationConfirmed] {
            assert!(Disclosure::ALL.iter().all(|next| !never.moves_to(*next)), "{never} moved");
        }
    }
}
