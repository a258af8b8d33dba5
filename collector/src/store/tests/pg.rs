//! PostgreSQL for the store tests: each test gets a fresh schema in the server that
//! `nodeward_testkit::require_postgres` provides (`NODEWARD_TEST_POSTGRES_URL`, or a
//! private cluster started from Debian's server binaries), and drops it when it passes.
//! Without a server the tests fail in CI and skip loudly elsewhere.

use sqlx::{AssertSqlSafe, PgPool};

use super::Store;

pub struct TestDb {
    admin: PgPool,
    url: String,
    schema: String,
}

impl TestDb {
    /// A new empty schema, or `None` (with a banner) when no server can be had.
    pub async fn create(test: &str) -> Option<Self> {
        let url = nodeward_testkit::require_postgres(&format!("postgres::{test}"))?;
        let admin = PgPool::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: cannot connect: {e}"));
        // Short and unique: identifiers longer than 63 bytes are silently truncated.
        let schema = format!("nodeward_test_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("creating schema {schema}: {e}"));
        Some(Self { admin, url, schema })
    }

    /// The URL of a connection that works in this schema only (`search_path`).
    pub fn url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.url, self.schema
        )
    }

    /// A store working in this schema only, migrations included. Each call opens
    /// another store on the same tables, as another collector replica would.
    pub async fn open(&self) -> Store {
        Store::open_postgres(&self.url(), None)
            .await
            .unwrap_or_else(|e| panic!("opening the store in {}: {e:#?}", self.schema))
    }

    pub async fn drop_schema(self) {
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.admin)
        .await
        .unwrap_or_else(|e| panic!("dropping schema {}: {e}", self.schema));
    }
}
