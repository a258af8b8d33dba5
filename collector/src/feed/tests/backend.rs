//! A store of either kind, a second view of it (another collector's connections), and a
//! way to stall its writer: holding the lock a writing transaction needs.

use sqlx::{Connection as _, PgPool, Postgres, SqliteConnection, Transaction};

use crate::store::{Store, tests::pg::TestDb};

pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

/// Held: the store's writers wait.
pub enum Stall {
    Sqlite(SqliteConnection),
    Postgres(Transaction<'static, Postgres>),
}

impl Backend {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` (with a banner) when no PostgreSQL server can be had outside CI.
    pub async fn postgres(test: &str) -> Option<Self> {
        TestDb::create(test).await.map(Self::Postgres)
    }

    /// A store; each call opens another one on the same data.
    pub async fn open(&self) -> Store {
        match self {
            Self::Sqlite(dir) => Store::open_sqlite(&dir.path().join("c.db")).await.unwrap(),
            Self::Postgres(db) => db.open().await,
        }
    }

    /// Takes the lock every finding insert needs: SQLite's write lock (the store's busy
    /// timeout is 5 s, so release it well before), or PostgreSQL's feed clock row.
    pub async fn stall(&self) -> Stall {
        match self {
            Self::Sqlite(dir) => {
                let url = format!("sqlite://{}", dir.path().join("c.db").display());
                let mut conn = SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Stall::Sqlite(conn)
            }
            Self::Postgres(db) => {
                let pool = PgPool::connect(&db.url()).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SELECT value FROM feed_clock FOR UPDATE")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                Stall::Postgres(tx)
            }
        }
    }

    pub async fn finish(self) {
        if let Self::Postgres(db) = self {
            db.drop_schema().await;
        }
    }
}

impl Stall {
    pub async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            Self::Postgres(tx) => tx.commit().await.unwrap(),
        }
    }
}
