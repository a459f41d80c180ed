//! Lists of numbers (spec section 5.5): the `lists` rows of a client and
//! their members, numbers as E.164 digits.
//!
//! Members are written in one transaction per call with multi-row
//! statements, so appending 10,000 numbers is a handful of statements, not
//! 10,000 round trips. Members are read in pages ordered by number (the
//! primary key), so a download or a blast never holds a whole list in memory
//! and can resume after the last number it saw.

use crate::store::dual;
use crate::with_db;
use sqlx::{QueryBuilder, Row};

use super::{Store, now};

/// Rows per multi-row statement: two binds a row, well under SQLite's limit.
const ROWS_PER_STATEMENT: usize = 1000;

/// One line of `list.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSummary {
    pub id: i64,
    pub name: String,
    pub kind: String,
}

/// A live list of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    pub id: i64,
    pub client_id: i64,
    pub name: String,
    pub kind: String,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Unix seconds of the last `list.send`; `None` before the first.
    pub last_used: Option<i64>,
}

impl Store {
    /// The client's newest live lists, newest first.
    pub async fn lists(&self, client_id: i64, limit: i64) -> sqlx::Result<Vec<ListSummary>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT id, name, type FROM lists WHERE client_id = $1 AND destroyed_at IS NULL
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(client_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(ListSummary {
                        id: row.try_get("id")?,
                        name: row.try_get("name")?,
                        kind: row.try_get("type")?,
                    })
                })
                .collect()
        })
    }

    /// A live list of this client; `None` for a missing, destroyed or
    /// another client's list, which callers answer alike (444).
    pub async fn list(&self, client_id: i64, id: i64) -> sqlx::Result<Option<List>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT * FROM lists WHERE id = $1 AND client_id = $2 AND destroyed_at IS NULL",
            )
            .bind(id)
            .bind(client_id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(on::list_from_row).transpose()
        })
    }

    /// How many members a list has.
    pub async fn list_total(&self, list_id: i64) -> sqlx::Result<i64> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar("SELECT COUNT(*) FROM list_members WHERE list_id = $1")
                .bind(list_id)
                .fetch_one(pool)
                .await
        })
    }

    /// Creates an empty list; `None` when the client already has a live list
    /// of that name.
    pub async fn create_list(&self, client_id: i64, name: &str) -> sqlx::Result<Option<i64>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let now = now();
            sqlx::query_scalar(
                "INSERT INTO lists (client_id, name, type, created_at, updated_at)
                 VALUES ($1, $2, 'uploaded', $3, $3)
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(client_id)
            .bind(name)
            .bind(now)
            .fetch_optional(writer)
            .await
        })
    }

    /// Adds numbers (distinct E.164 digits) to a live list in one commit;
    /// returns how many were not members yet, `None` when the list is gone.
    pub async fn add_list_members(
        &self,
        list_id: i64,
        numbers: &[String],
    ) -> sqlx::Result<Option<u64>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let now = now();
            let mut tx = writer.begin().await?;
            if !on::touch(&mut tx, list_id, now).await? {
                return Ok(None);
            }
            let mut created = 0;
            for chunk in numbers.chunks(ROWS_PER_STATEMENT) {
                let mut insert: QueryBuilder<Db> =
                    QueryBuilder::new("INSERT INTO list_members (list_id, number, added_at) ");
                insert.push_values(chunk, |mut b, number| {
                    b.push_bind(list_id).push_bind(number).push_bind(now);
                });
                insert.push(" ON CONFLICT (list_id, number) DO NOTHING");
                created += insert.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(Some(created))
        })
    }

    /// Removes numbers (distinct E.164 digits) from a live list in one
    /// commit; returns how many were members, `None` when the list is gone.
    pub async fn remove_list_members(
        &self,
        list_id: i64,
        numbers: &[String],
    ) -> sqlx::Result<Option<u64>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            if !on::touch(&mut tx, list_id, now()).await? {
                return Ok(None);
            }
            let mut deleted = 0;
            for chunk in numbers.chunks(ROWS_PER_STATEMENT) {
                let mut delete: QueryBuilder<Db> =
                    QueryBuilder::new("DELETE FROM list_members WHERE list_id = ");
                delete.push_bind(list_id).push(" AND number IN (");
                let mut separated = delete.separated(", ");
                for number in chunk {
                    separated.push_bind(number);
                }
                delete.push(")");
                deleted += delete.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(Some(deleted))
        })
    }

    /// Removes every member of a live list; false when the list is gone.
    pub async fn empty_list(&self, list_id: i64) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            if !on::touch(&mut tx, list_id, now()).await? {
                return Ok(false);
            }
            on::delete_members(&mut tx, list_id).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Destroys a live list and drops its members; false when it was gone.
    /// The row stays (destroyed), so its id is never given out again.
    pub async fn destroy_list(&self, list_id: i64) -> sqlx::Result<bool> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let now = now();
            let mut tx = writer.begin().await?;
            let done = sqlx::query(
                "UPDATE lists SET destroyed_at = $2, updated_at = $2 WHERE id = $1 AND destroyed_at IS NULL",
            )
            .bind(list_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            on::delete_members(&mut tx, list_id).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Up to `limit` members after `after` (exclusive; `""` for the first
    /// page), in number order.
    pub async fn list_members_after(
        &self,
        list_id: i64,
        after: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<String>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            on::list_members_after(pool, list_id, after, limit).await
        })
    }
}

dual! {
    pub(crate) fn list_from_row(row: &DbRow) -> sqlx::Result<List> {
        Ok(List {
            id: row.try_get("id")?,
            client_id: row.try_get("client_id")?,
            name: row.try_get("name")?,
            kind: row.try_get("type")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            last_used: row.try_get("last_used")?,
        })
    }

    /// The same page query, on any connection (a blast reads inside its commit).
    pub(crate) async fn list_members_after<'c, E>(
        executor: E,
        list_id: i64,
        after: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<String>>
    where
        E: sqlx::Executor<'c, Database = Db>,
    {
        sqlx::query_scalar(
            "SELECT number FROM list_members WHERE list_id = $1 AND number > $2
             ORDER BY number LIMIT $3",
        )
        .bind(list_id)
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await
    }

    /// Records that a live list was used by a send.
    pub(crate) async fn mark_list_used(conn: &mut Conn, list_id: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE lists SET last_used = $2 WHERE id = $1")
            .bind(list_id)
            .bind(now())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Moves `updated_at` of a live list; false when the list is gone, so a
    /// change racing a destroy finds nothing to change.
    pub(crate) async fn touch(conn: &mut Conn, list_id: i64, now: i64) -> sqlx::Result<bool> {
        let done =
            sqlx::query("UPDATE lists SET updated_at = $2 WHERE id = $1 AND destroyed_at IS NULL")
                .bind(list_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn delete_members(conn: &mut Conn, list_id: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM list_members WHERE list_id = $1")
            .bind(list_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
