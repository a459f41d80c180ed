//! Carriers, ported numbers and blacklists as stored.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, now};
use crate::domain::carrier::{Carrier, CarrierTable};
use crate::domain::phone::PhoneNumber;

impl Store {
    /// Loads every carrier, ported number and barred number into memory.
    pub async fn carrier_table(&self) -> sqlx::Result<CarrierTable> {
        let rows = sqlx::query(
            "SELECT id, name, prefixes, served, mms, connector FROM carriers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut carriers = Vec::with_capacity(rows.len());
        for row in rows {
            let prefixes: String = row.try_get("prefixes")?;
            carriers.push(Carrier {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                prefixes: prefixes
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                served: row.try_get::<i64, _>("served")? != 0,
                mms: row.try_get::<i64, _>("mms")? != 0,
                connector: row.try_get("connector")?,
            });
        }
        let ported: HashMap<String, i64> =
            sqlx::query_as::<_, (String, i64)>("SELECT number, carrier_id FROM ported_numbers")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let blacklist: Vec<(String, i64)> =
            sqlx::query_as("SELECT number, carrier_id FROM blacklist")
                .fetch_all(&self.pool)
                .await?;
        Ok(CarrierTable::new(carriers, ported, blacklist))
    }

    /// Bars a number on a carrier, durably.
    pub async fn bar_number(&self, number: &PhoneNumber, carrier_id: i64) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO blacklist (number, carrier_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(number.digits())
            .bind(carrier_id)
            .bind(now())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
