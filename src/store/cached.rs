//! Statements the daemon runs again and again are parsed once per connection.
//!
//! Every write and the queries behind each cycle go through `run` and `one`, which keep the
//! prepared statement in the connection's cache: parsing SQL was a tenth of the daemon's CPU on
//! a trickle of small blobs, where each blob is a handful of short statements.

use rusqlite::{Connection, Params, Row};

pub(crate) trait Cached {
    /// `execute`, with the statement cached.
    fn run<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// `query_row`, with the statement cached.
    fn one<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P: Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        params: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Enough for every statement of the ingest, forwarder and maintenance paths at once.
pub(crate) const CAPACITY: usize = 64;
