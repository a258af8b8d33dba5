//! PostgreSQL for the store tests: each test gets a fresh schema in the database that
//! `NODEWARD_TEST_POSTGRES_URL` names, and drops it when it passes. Without the variable
//! the PostgreSQL tests say so and pass: CI has no PostgreSQL server.

use sqlx::{AssertSqlSafe, PgPool};

use super::Store;

pub const URL_ENV: &str = "NODEWARD_TEST_POSTGRES_URL";

pub struct TestDb {
    admin: PgPool,
    url: String,
    schema: String,
}

impl TestDb {
    /// A new empty schema, or `None` (with a message) when no server is configured.
    pub async fn create(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var(URL_ENV) else {
            eprintln!(
                "skipping postgres::{test}: set {URL_ENV}=postgres://user:password@host/db to run it"
            );
            return None;
        };
        let admin = PgPool::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{URL_ENV}: cannot connect: {e}"));
        // Short and unique: identifiers longer than 63 bytes are silently truncated.
        let schema = format!("nodeward_test_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("creating schema {schema}: {e}"));
        Some(Self { admin, url, schema })
    }

    /// A store whose connections work in this schema only (`search_path`), migrations
    /// included.
    pub async fn open(&self) -> Store {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.url, self.schema
        );
        Store::open_postgres(&url)
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
