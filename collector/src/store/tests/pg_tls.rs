//! TLS to PostgreSQL, configured in the URL as with libpq: the private test cluster
//! serves a certificate for 127.0.0.1 signed by its own CA.

use sqlx::{AssertSqlSafe, PgPool};

use super::{Pool, Store};

/// Whether the store's connections are encrypted, as the server sees them.
async fn encrypted(store: &Store) -> bool {
    let Pool::Postgres(pool) = &store.pool else {
        unreachable!("a PostgreSQL store");
    };
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_tls_is_verified_as_the_url_says() {
    let Some((url, ca)) = nodeward_testkit::require_postgres_tls("postgres_tls_is_verified") else {
        return;
    };
    // A schema of its own, like the other store tests.
    let admin = PgPool::connect(&url).await.unwrap();
    let schema = format!("nodeward_tls_{:016x}", rand::random::<u64>());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let with = |params: &str| format!("{url}?options=-c%20search_path%3D{schema}&{params}");

    let verified = Store::open_postgres(
        &with(&format!("sslmode=verify-full&sslrootcert={}", ca.display())),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("verify-full with the server's CA: {e:#?}"));
    assert!(encrypted(&verified).await);
    let required = Store::open_postgres(&with("sslmode=require"), None)
        .await
        .unwrap_or_else(|e| panic!("require: {e:#?}"));
    assert!(encrypted(&required).await);
    let plain = Store::open_postgres(&with("sslmode=disable"), None)
        .await
        .unwrap_or_else(|e| panic!("disable: {e:#?}"));
    assert!(!encrypted(&plain).await, "sslmode=disable still encrypted");

    // A CA that did not sign the server's certificate: no connection.
    let other = tempfile::tempdir().unwrap();
    nodeward_testkit::certs::write_certs(
        other.path(),
        &nodeward_testkit::certs::CertsOptions::default(),
    )
    .unwrap();
    let other_ca = other.path().join("ca.crt");
    let err = Store::open_postgres(
        &with(&format!(
            "sslmode=verify-full&sslrootcert={}",
            other_ca.display()
        )),
        None,
    )
    .await
    .err()
    .expect("verify-full accepted a certificate from another CA");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
    drop((verified, required, plain));
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
