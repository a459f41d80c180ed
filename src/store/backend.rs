//! One text of store code for two databases.
//!
//! The store speaks SQLite (embedded, the default) or PostgreSQL (shared by
//! several nodes). Both take the same SQL with `$1` placeholders, so each
//! query is written once; what differs is only the Rust type of the pool,
//! connection and row. Rather than make every store function generic over
//! sqlx's database traits (whose bounds do not carry over to callers), the
//! code is compiled once per database:
//!
//! - [`with_db!`] runs a block against the store's pools, with `pool` (reads)
//!   and `writer` (writes) bound to the right pool type, `Db` naming the
//!   database type, `PG` telling whether it is PostgreSQL (for the rare
//!   statement that must differ) and `on` naming the helpers of that
//!   database;
//! - [`dual!`] compiles helper functions (those taking a connection inside a
//!   transaction, and row readers) into a `sqlite` and a `postgres` module
//!   of the file that declares them, each seeing `Db`, `Conn` (the
//!   connection type), `DbRow` and `PG`; `on::name` reaches them.

use sqlx::{PgPool, SqlitePool};

/// The store's database.
#[derive(Clone)]
pub enum Db {
    /// Reads on several connections, which WAL lets run beside the writer;
    /// writes on one connection. SQLite takes one writer at a time anyway;
    /// queueing writers here, in order, beats letting them collide and back
    /// off in SQLite's busy handler (tens of milliseconds each).
    Sqlite {
        pool: SqlitePool,
        writer: SqlitePool,
    },
    /// One pool for both: PostgreSQL lets writers run side by side.
    Postgres { pool: PgPool },
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres { .. })
    }
}

/// What [`with_db!`] runs against: the store, or its database.
pub trait AsDb {
    fn as_db(&self) -> &Db;
}

impl AsDb for Db {
    fn as_db(&self) -> &Db {
        self
    }
}

impl AsDb for super::Store {
    fn as_db(&self) -> &Db {
        &self.db
    }
}

impl<T: AsDb + ?Sized> AsDb for &T {
    fn as_db(&self) -> &Db {
        (**self).as_db()
    }
}

/// Runs a block of store code against the store's database:
/// `with_db!(store, |pool, writer| { … })`. See the module documentation.
#[macro_export]
macro_rules! with_db {
    (@arm $helpers:ident, $db:ident, $pg:expr, $body:expr) => {{
        #[allow(unused_imports)]
        use $crate::store::$helpers as on;
        #[allow(dead_code)]
        type Db = ::sqlx::$db;
        #[allow(dead_code)]
        const PG: bool = $pg;
        $body
    }};
    ($store:expr, |$pool:ident, $writer:ident| $body:expr) => {
        match $crate::store::backend::AsDb::as_db(&$store) {
            #[allow(unused_variables)]
            $crate::store::Db::Sqlite {
                pool: $pool,
                writer: $writer,
            } => $crate::with_db!(@arm on_sqlite, Sqlite, false, $body),
            #[allow(unused_variables)]
            $crate::store::Db::Postgres { pool: $pool } => {
                #[allow(unused_variables)]
                let $writer = $pool;
                $crate::with_db!(@arm on_postgres, Postgres, true, $body)
            }
        }
    };
}

/// Compiles helper items once per database, into modules `sqlite` and
/// `postgres` of the calling file. See the module documentation.
macro_rules! dual {
    (@module $module:ident, $helpers:ident, $db:ident, $conn:ident, $($row:ident)::+, $pg:expr, $($item:item)*) => {
        pub(crate) mod $module {
            #![allow(unused_imports, dead_code)]
            use super::*;
            use $crate::store::$helpers as on;
            pub(crate) type Db = ::sqlx::$db;
            pub(crate) type Conn = ::sqlx::$conn;
            pub(crate) type DbRow = ::sqlx::$($row)::+;
            pub(crate) const PG: bool = $pg;
            $($item)*
        }
    };
    ($($item:item)*) => {
        $crate::store::dual!(@module sqlite, on_sqlite, Sqlite, SqliteConnection, sqlite::SqliteRow, false, $($item)*);
        $crate::store::dual!(@module postgres, on_postgres, Postgres, PgConnection, postgres::PgRow, true, $($item)*);
    };
}
pub(crate) use dual;
