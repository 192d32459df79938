//! A fresh PostgreSQL database per test, from the server that
//! `scripts/postgres.sh` started for the test run (its URL in
//! KENNING_TEST_DATABASE). The CLI's scale-out tests include this file too.

#![allow(dead_code)]

use std::str::FromStr;

/// A database created for one test and dropped when it ends.
pub struct TestDb {
    pub url: String,
    admin: String,
    name: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs one SQL statement against `url`.
pub fn sql(url: &str, statement: &str) {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    runtime().block_on(async {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        client.batch_execute(statement).await.unwrap();
        drop(client);
        let _ = task.await;
    });
}

/// Runs a query returning one text column and returns its rows.
pub fn query(url: &str, statement: &str) -> Vec<String> {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    runtime().block_on(async {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        let rows = client.query(statement, &[]).await.unwrap();
        drop(client);
        let _ = task.await;
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    })
}

/// The test run's server, or `None` once the skip is recorded (a failure
/// under CI, where scripts/test.sh always starts one).
pub fn server(test: &str) -> Option<String> {
    kenning_testdata::database(test)
}

impl TestDb {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password in its URL (to check it never reaches a message).
    pub fn password(&self) -> String {
        let config = tokio_postgres::Config::from_str(&self.url).unwrap();
        String::from_utf8(config.get_password().unwrap_or_default().to_vec()).unwrap()
    }

    /// A new, empty database on the test run's server.
    pub fn new(test: &str) -> Option<Self> {
        let admin = server(test)?;
        let name = format!("kenning_test_{}", uuid::Uuid::new_v4().simple());
        sql(&admin, &format!("CREATE DATABASE {name}"));
        let url = with_database(&admin, &name);
        Some(Self { url, admin, name })
    }
}

/// `url` pointing at database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rsplit_once('/') {
        Some((head, _)) if head.contains("://") && head.len() > head.find("://").unwrap() + 3 => {
            format!("{head}/{name}")
        }
        _ => format!("{base}/{name}"),
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        sql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
