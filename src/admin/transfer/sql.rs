//! Export and import against the store's database, compiled once for
//! SQLite and once for PostgreSQL (see `store::backend`): `sqlite::export`,
//! `postgres::import`, …
//!
//! Table and column names in the SQL built here come from [`TABLES`] and
//! from the database's own catalog, never from a dump: a dump's column names
//! are only compared with the catalog's.
//!
//! The `rowid` columns of PostgreSQL tables stand for SQLite's hidden rowid
//! (insertion order, which the store sorts by): like SQLite's, they are not
//! in the dump. Both databases are read in rowid order where there is one,
//! and import writes rows in the dump's order, so the order survives.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use sqlx::{AssertSqlSafe, Row, ValueRef};

use super::dump::{
    Column, DumpReader, DumpWriter, FORMAT, FORMAT_VERSION, Header, Kind, TableHeader, Tally,
    Value, overall_checksum,
};
use super::{BATCH_ROWS, PAGE_ROWS, Progress, Summary, TABLES, Table};

/// The most parameters one statement takes: SQLite allows 32,766,
/// PostgreSQL 65,535.
const MAX_PARAMETERS: usize = 32_000;

/// `"name"`, safe as an identifier in both databases.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(quoted).collect::<Vec<_>>().join(", ")
}

/// Rows per INSERT: a batch, unless the columns would pass the parameter
/// limit.
fn rows_per_insert(columns: usize) -> usize {
    BATCH_ROWS.min(MAX_PARAMETERS / columns.max(1)).max(1)
}

/// A multi-row INSERT. PostgreSQL numbers its parameters (`$1`); SQLite
/// takes plain `?`, as it looks each `$N` up by name in a list, which makes
/// binding a statement of thousands of parameters quadratic.
fn insert_sql(table: &str, columns: &[Column], rows: usize, numbered: bool) -> String {
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        quoted(table),
        quoted_list(columns.iter().map(|c| c.name.as_str()))
    );
    let mut parameter = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for column in 0..columns.len() {
            if column > 0 {
                sql.push(',');
            }
            parameter += 1;
            if numbered {
                sql.push_str(&format!("${parameter}"));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// The dump's columns, in its order, with the target's declared kinds; an
/// error unless both have the same columns.
fn match_columns(dumped: &TableHeader, target: &[Column]) -> anyhow::Result<Vec<Column>> {
    let names = |columns: &[Column]| {
        columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let matched: Option<Vec<Column>> = dumped
        .columns
        .iter()
        .map(|c| target.iter().find(|t| t.name == c.name).cloned())
        .collect();
    match matched {
        Some(matched) if matched.len() == target.len() => Ok(matched),
        _ => anyhow::bail!(
            "table {}: the dump's columns ({}) are not the database's ({})",
            dumped.name,
            names(&dumped.columns),
            names(target)
        ),
    }
}

/// The tables of the dump and of the schema must be the same, in order.
fn check_table_list(header: &Header, file: &Path) -> anyhow::Result<()> {
    let dumped: Vec<&str> = header.tables.iter().map(|t| t.name.as_str()).collect();
    let known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    if dumped != known {
        anyhow::bail!(
            "{} lists the tables {} where this schema has {}",
            file.display(),
            dumped.join(", "),
            known.join(", ")
        );
    }
    Ok(())
}

/// The tables of a database that export and import do not know, and those
/// they expect but do not find.
fn compare_tables(found: &[String]) -> anyhow::Result<()> {
    let unknown: Vec<&str> = found
        .iter()
        .map(String::as_str)
        .filter(|name| *name != "schema_migrations" && !TABLES.iter().any(|t| t.name == *name))
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "the database has tables this version of moms does not know ({}); export it with the moms version that created them",
            unknown.join(", ")
        );
    }
    let missing: Vec<&str> = TABLES
        .iter()
        .map(|t| t.name)
        .filter(|name| !found.iter().any(|f| f == name))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the database lacks the tables {}; run `moms migrate` on it",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Tables whose dump and database tallies differ, described.
fn differences(dumped: &[Tally], loaded: &[Tally]) -> Vec<String> {
    dumped
        .iter()
        .zip(loaded)
        .filter(|(d, l)| d != l)
        .map(|(d, l)| {
            if d.rows != l.rows {
                format!(
                    "{}: {} rows in the dump, {} in the database",
                    d.table, d.rows, l.rows
                )
            } else {
                format!("{}: the rows' checksums differ", d.table)
            }
        })
        .collect()
}

crate::store::dual! {
    use sqlx::Database as _;

    type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>;

    /// A read transaction: every read in it sees the same state of the
    /// database, whatever a running server writes meanwhile.
    async fn snapshot(pool: &sqlx::Pool<Db>) -> sqlx::Result<sqlx::Transaction<'static, Db>> {
        if PG {
            pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
        } else {
            pool.begin().await
        }
    }

    async fn check_tables(conn: &mut Conn) -> anyhow::Result<()> {
        let sql = if PG {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        };
        let found: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut *conn).await?;
        compare_tables(&found)
    }

    /// The highest migration applied.
    async fn schema_version(conn: &mut Conn) -> sqlx::Result<i64> {
        sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        )
        .fetch_one(&mut *conn)
        .await
    }

    /// A table's columns in their declared order, from the catalog.
    async fn columns(conn: &mut Conn, table: &str) -> anyhow::Result<Vec<Column>> {
        let sql = if PG {
            "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name <> 'rowid'
             ORDER BY ordinal_position"
        } else {
            "SELECT name, type FROM pragma_table_info($1) ORDER BY cid"
        };
        let found: Vec<(String, String)> = sqlx::query_as(sql)
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
        found
            .into_iter()
            .map(|(name, declared)| match Kind::from_declared(&declared) {
                Some(kind) => Ok(Column { name, kind }),
                None => anyhow::bail!(
                    "column {table}.{name} is of type {declared}, which a dump does not carry"
                ),
            })
            .collect()
    }

    async fn count(conn: &mut Conn, table: &str) -> sqlx::Result<u64> {
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {}",
            quoted(table)
        )))
        .fetch_one(&mut *conn)
        .await?;
        Ok(count as u64)
    }

    /// Whether a PostgreSQL table has a `rowid` column (see the module docs).
    async fn has_rowid_column(conn: &mut Conn, table: &str) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) > 0 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'rowid'",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await
    }

    /// Reads one stored value, trying the kinds in the column's decoding
    /// order (see [`Kind::decoding_order`]).
    fn decode(row: &DbRow, index: usize, declared: Kind) -> anyhow::Result<Value> {
        if row.try_get_raw(index)?.is_null() {
            return Ok(Value::Null);
        }
        for kind in declared.decoding_order() {
            let value = match kind {
                Kind::Integer => row
                    .try_get::<i64, _>(index)
                    .ok()
                    .or_else(|| row.try_get::<i32, _>(index).ok().map(i64::from))
                    .map(Value::Integer),
                Kind::Real => row
                    .try_get::<f64, _>(index)
                    .ok()
                    .or_else(|| row.try_get::<f32, _>(index).ok().map(f64::from))
                    .map(Value::Real),
                Kind::Text => row.try_get::<String, _>(index).ok().map(Value::Text),
                Kind::Blob => row.try_get::<Vec<u8>, _>(index).ok().map(Value::Blob),
            };
            if let Some(value) = value {
                return Ok(value);
            }
        }
        anyhow::bail!("column {index} holds a value of no type a dump carries")
    }

    /// Decodes `columns` from each row, starting at column `first`.
    fn decode_rows(
        rows: &[DbRow],
        first: usize,
        columns: &[Column],
        table: &str,
    ) -> anyhow::Result<Vec<Vec<Value>>> {
        rows.iter()
            .map(|row| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, column)| {
                        decode(row, first + i, column.kind)
                            .with_context(|| format!("reading {table}.{}", column.name))
                    })
                    .collect()
            })
            .collect()
    }

    /// Calls `page` with the table's rows, a page at a time.
    ///
    /// SQLite pages by rowid (by the key for a `WITHOUT ROWID` table), each
    /// page a short indexed read. PostgreSQL has no rowid and two tables
    /// have no key: there a cursor of the snapshot reads the table in key
    /// order (physical order for a table without key), a page per FETCH.
    async fn read_pages(
        conn: &mut Conn,
        table: &Table,
        columns: &[Column],
        mut page: impl FnMut(&[Vec<Value>]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let list = quoted_list(columns.iter().map(|c| c.name.as_str()));
        let name = quoted(table.name);
        if PG {
            let order = if has_rowid_column(conn, table.name).await? {
                "rowid".to_string()
            } else if table.key.is_empty() {
                "ctid".to_string()
            } else {
                quoted_list(table.key.iter().copied())
            };
            sqlx::query(AssertSqlSafe(format!(
                "DECLARE moms_export NO SCROLL CURSOR FOR SELECT {list} FROM {name} ORDER BY {order}"
            )))
            .execute(&mut *conn)
            .await?;
            loop {
                // Not a prepared statement kept for the next call: the same
                // text returns other columns for another table's cursor.
                let rows =
                    sqlx::query(AssertSqlSafe(format!("FETCH {PAGE_ROWS} FROM moms_export")))
                        .persistent(false)
                        .fetch_all(&mut *conn)
                        .await?;
                if !rows.is_empty() {
                    page(&decode_rows(&rows, 0, columns, table.name)?)?;
                }
                if rows.len() < PAGE_ROWS {
                    break;
                }
            }
            sqlx::query("CLOSE moms_export").execute(&mut *conn).await?;
            return Ok(());
        }
        // The paging key comes first in each row read: the rowid, or the
        // table's key columns (for the next page's WHERE).
        let (key, key_list): (Vec<Column>, String) = if table.without_rowid {
            let key = table
                .key
                .iter()
                .map(|k| columns.iter().find(|c| c.name == *k).cloned())
                .collect::<Option<Vec<Column>>>()
                .with_context(|| format!("table {} lacks a column of its key", table.name))?;
            (key, quoted_list(table.key.iter().copied()))
        } else {
            let rowid = Column {
                name: "rowid".to_string(),
                kind: Kind::Integer,
            };
            (vec![rowid], "rowid".to_string())
        };
        let mut last: Option<Vec<Value>> = None;
        loop {
            let sql = match &last {
                None => format!(
                    "SELECT {key_list}, {list} FROM {name} ORDER BY {key_list} LIMIT {PAGE_ROWS}"
                ),
                Some(_) => {
                    let parameters: Vec<String> =
                        (1..=key.len()).map(|i| format!("${i}")).collect();
                    format!(
                        "SELECT {key_list}, {list} FROM {name} WHERE ({key_list}) > ({}) ORDER BY {key_list} LIMIT {PAGE_ROWS}",
                        parameters.join(", ")
                    )
                }
            };
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (value, column) in last.iter().flatten().zip(&key) {
                query = bind(query, value, column.kind);
            }
            let rows = query.fetch_all(&mut *conn).await?;
            if let Some(final_row) = rows.last() {
                last = decode_rows(std::slice::from_ref(final_row), 0, &key, table.name)?.pop();
                page(&decode_rows(&rows, key.len(), columns, table.name)?)?;
            }
            if rows.len() < PAGE_ROWS {
                return Ok(());
            }
        }
    }

    /// Binds a value; a NULL is bound as the column's kind, which
    /// PostgreSQL needs to type it.
    fn bind<'q>(query: Query<'q>, value: &Value, kind: Kind) -> Query<'q> {
        match value {
            Value::Null => match kind {
                Kind::Integer => query.bind(None::<i64>),
                Kind::Real => query.bind(None::<f64>),
                Kind::Text => query.bind(None::<String>),
                Kind::Blob => query.bind(None::<Vec<u8>>),
            },
            Value::Integer(value) => query.bind(*value),
            Value::Real(value) => query.bind(*value),
            Value::Text(value) => query.bind(value.as_str()),
            Value::Blob(value) => query.bind(value.as_slice()),
        }
    }

    /// Writes `rows` in one transaction.
    async fn insert_rows(
        writer: &sqlx::Pool<Db>,
        table: &str,
        columns: &[Column],
        rows: &[Vec<Value>],
    ) -> anyhow::Result<()> {
        let mut tx = writer.begin().await?;
        for chunk in rows.chunks(rows_per_insert(columns.len())) {
            let mut query = sqlx::query(AssertSqlSafe(insert_sql(table, columns, chunk.len(), PG)));
            for row in chunk {
                for (value, column) in row.iter().zip(columns) {
                    query = bind(query, value, column.kind);
                }
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves PostgreSQL's id sequences past the imported ids, or the
    /// database would hand out ids that exist: an identity `id` column's
    /// (`pg_get_serial_sequence` is NULL for a plain `id`, and `setval(NULL,
    /// …)` does nothing), and the table's own sequence, only ever forward.
    async fn advance_sequences(
        writer: &sqlx::Pool<Db>,
        table: &Table,
        columns: &[Column],
    ) -> sqlx::Result<()> {
        if !PG || !columns.iter().any(|c| c.name == "id") {
            return Ok(());
        }
        let name = quoted(table.name);
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence($1, 'id'), MAX(id)) FROM {name} HAVING MAX(id) IS NOT NULL"
        )))
        .bind(table.name)
        .execute(writer)
        .await?;
        if let Some(sequence) = table.id_sequence {
            let sequence = quoted(sequence);
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval('{sequence}', MAX(id)) FROM {name}
                 HAVING MAX(id) > (SELECT last_value FROM {sequence})"
            )))
            .execute(writer)
            .await?;
        }
        Ok(())
    }

    /// Counts and checksums every table in one snapshot, reading the
    /// columns in the order given (the dump's).
    async fn tally_tables(
        pool: &sqlx::Pool<Db>,
        columns: &[Vec<Column>],
        progress: &Progress,
        doing: &str,
    ) -> anyhow::Result<Vec<Tally>> {
        let mut tx = snapshot(pool).await?;
        let mut tallies = Vec::new();
        for (table, columns) in TABLES.iter().zip(columns) {
            let bar = progress.bar(doing, table.name, count(&mut tx, table.name).await?);
            let mut tally = Tally::new(table.name);
            read_pages(&mut tx, table, columns, |rows| {
                rows.iter().for_each(|row| tally.add(row));
                bar.inc(rows.len() as u64);
                Ok(())
            })
            .await?;
            bar.finish();
            tallies.push(tally);
        }
        tx.rollback().await?;
        Ok(tallies)
    }

    /// Writes the whole database to `file`.
    pub(crate) async fn export(
        pool: &sqlx::Pool<Db>,
        file: &Path,
        progress: &Progress,
    ) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let mut tx = snapshot(pool).await?;
        check_tables(&mut tx).await?;
        let schema_version = schema_version(&mut tx).await?;
        let mut tables = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            tables.push(TableHeader {
                name: table.name.to_string(),
                rows: count(&mut tx, table.name).await?,
                columns: columns(&mut tx, table.name).await?,
            });
        }
        let header = Header {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            schema_version,
            source: if PG { "postgres" } else { "sqlite" }.to_string(),
            created_at: crate::store::now(),
            tables,
        };
        let mut dump = DumpWriter::create(file, &header)?;
        let mut tallies = Vec::with_capacity(TABLES.len());
        for (table, announced) in TABLES.iter().zip(&header.tables) {
            let bar = progress.bar("exporting", table.name, announced.rows);
            dump.begin_table(table.name)?;
            let mut tally = Tally::new(table.name);
            read_pages(&mut tx, table, &announced.columns, |rows| {
                for row in rows {
                    dump.row(row)?;
                    tally.add(row);
                }
                bar.inc(rows.len() as u64);
                Ok(())
            })
            .await?;
            bar.finish();
            // One snapshot: the count and the rows cannot disagree.
            anyhow::ensure!(
                tally.rows == announced.rows,
                "table {}: counted {} rows, read {}",
                table.name,
                announced.rows,
                tally.rows
            );
            dump.end_table(&tally)?;
            tallies.push(tally);
        }
        tx.rollback().await?;
        let overall = overall_checksum(&tallies);
        dump.finish(&overall)?;
        Ok(Summary {
            schema_version,
            tallies,
            overall,
            elapsed: started.elapsed(),
        })
    }

    /// Refuses a target of another schema version, of other columns, or
    /// holding rows; the target's columns in the dump's order.
    async fn check_target(
        conn: &mut Conn,
        header: &Header,
        file: &Path,
    ) -> anyhow::Result<Vec<Vec<Column>>> {
        check_tables(conn).await?;
        let known = schema_version(conn).await?;
        if header.schema_version > known {
            anyhow::bail!(
                "{} holds schema version {}, newer than this moms knows ({known}): import it with the moms version that exported it, or a newer one",
                file.display(),
                header.schema_version
            );
        }
        if header.schema_version < known {
            anyhow::bail!(
                "{} holds schema version {}, older than this moms's ({known}): export again with this version, which brings the source's schema up to date first",
                file.display(),
                header.schema_version
            );
        }
        check_table_list(header, file)?;
        let mut insert_columns = Vec::with_capacity(TABLES.len());
        for dumped in &header.tables {
            insert_columns.push(match_columns(dumped, &columns(conn, &dumped.name).await?)?);
        }
        let mut occupied = Vec::new();
        for table in TABLES.iter().filter(|t| !t.seeded) {
            let rows = count(conn, table.name).await?;
            if rows > 0 {
                occupied.push(format!("{} has {rows} rows", table.name));
            }
        }
        if !occupied.is_empty() {
            anyhow::bail!(
                "the database is not empty ({}): import only into a fresh database — a new --data-dir, or a new, empty PostgreSQL database in MOMS_DATABASE_URL or store.url; `moms admin import` creates the schema itself, and `moms serve` or `moms migrate` with [[carriers]] configured would already write rows",
                occupied.join(", ")
            );
        }
        Ok(insert_columns)
    }

    /// Writes one table's rows from the dump, a batch per transaction.
    async fn load_table(
        writer: &sqlx::Pool<Db>,
        reader: &mut DumpReader,
        table: &Table,
        columns: &[Column],
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let bar = progress.bar("importing", table.name, reader.begin_table()?.rows);
        if table.seeded {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", quoted(table.name))))
                .execute(writer)
                .await?;
        }
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        loop {
            let row = reader.next_row()?;
            let end = row.is_none();
            batch.extend(row);
            if batch.len() == BATCH_ROWS || (end && !batch.is_empty()) {
                insert_rows(writer, table.name, columns, &batch).await.with_context(|| {
                    format!(
                        "cannot import table {}; the database now holds part of the dump: start again with a fresh database",
                        table.name
                    )
                })?;
                bar.inc(batch.len() as u64);
                batch.clear();
            }
            if end {
                break;
            }
        }
        bar.finish();
        advance_sequences(writer, table, columns).await?;
        Ok(())
    }

    /// Loads `file` into the empty database, proves the dump whole before
    /// writing, and the database equal to it after.
    pub(crate) async fn import(
        pool: &sqlx::Pool<Db>,
        writer: &sqlx::Pool<Db>,
        file: &Path,
        progress: &Progress,
    ) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let mut reader = DumpReader::open(file)?;
        let header = reader.header().clone();
        let insert_columns = check_target(&mut *pool.acquire().await?, &header, file).await?;

        // Prove the dump whole before writing a row of it.
        let total: u64 = header.tables.iter().map(|t| t.rows).sum();
        let bar = progress.bar("checking", "the dump", total);
        let (dumped, dumped_overall) = reader.verify_rest(|_, rows| bar.inc(rows))?;
        bar.finish();

        let mut reader = DumpReader::open(file)?;
        for (table, columns) in TABLES.iter().zip(&insert_columns) {
            load_table(writer, &mut reader, table, columns, progress).await?;
        }
        reader.finish()?;

        let loaded = tally_tables(pool, &insert_columns, progress, "verifying").await?;
        let differ = differences(&dumped, &loaded);
        if !differ.is_empty() {
            anyhow::bail!(
                "the imported database does not match {}: {}",
                file.display(),
                differ.join("; ")
            );
        }
        let overall = overall_checksum(&loaded);
        anyhow::ensure!(
            overall == dumped_overall,
            "the overall checksum differs from the dump's"
        );
        Ok(Summary {
            schema_version: header.schema_version,
            tallies: loaded,
            overall,
            elapsed: started.elapsed(),
        })
    }
}
