//! Leases: work one node at a time may do (an SMPP bind). A node takes a
//! free or lapsed lease, renews it while it works, and gives it up when it
//! stops; a node that dies simply stops renewing, and once its lease lapses
//! another node takes it.

use super::Store;
use crate::with_db;

impl Store {
    /// Takes the lease `name` for `holder` until `now_ms + lease_ms`, or
    /// renews it when `holder` has it already; false while another holder's
    /// lease runs. One statement, so two nodes cannot both succeed.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let taken: Option<String> = sqlx::query_scalar(
                "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
                 WHERE leases.holder = excluded.holder OR leases.expires_ms < $4
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .fetch_optional(writer)
            .await?;
            Ok(taken.is_some())
        })
    }

    /// Gives a lease up (at a clean stop), so another node need not wait
    /// for it to lapse.
    pub async fn release_lease(&self, name: &str, holder: &str) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(writer)
                .await?;
            Ok(())
        })
    }

    /// Who holds the lease `name` and until when (unix milliseconds).
    pub async fn lease(&self, name: &str) -> sqlx::Result<Option<(String, i64)>> {
        with_db!(self, |pool, writer| {
            sqlx::query_as("SELECT holder, expires_ms FROM leases WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await
        })
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn one_holder_at_a_time_until_the_lease_lapses() {
        let (_dir, store) = crate::store::test_store().await;
        let name = "smpp:3:0";
        assert!(store.take_lease(name, "a", 1_000, 500).await.unwrap());
        assert!(!store.take_lease(name, "b", 1_200, 500).await.unwrap());
        // The holder renews.
        assert!(store.take_lease(name, "a", 1_400, 500).await.unwrap());
        assert!(!store.take_lease(name, "b", 1_800, 500).await.unwrap());
        // Lapsed: another node takes it, and the old holder cannot renew.
        assert!(store.take_lease(name, "b", 1_901, 500).await.unwrap());
        assert!(!store.take_lease(name, "a", 1_950, 500).await.unwrap());
        assert_eq!(
            store.lease(name).await.unwrap(),
            Some(("b".to_string(), 2_401))
        );
        // Released: free at once.
        store.release_lease(name, "a").await.unwrap();
        assert!(store.lease(name).await.unwrap().is_some());
        store.release_lease(name, "b").await.unwrap();
        assert!(store.take_lease(name, "a", 2_000, 500).await.unwrap());
    }
}
