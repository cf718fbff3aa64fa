//! Running one sea-orm statement on a rusqlite connection: parameters in, rows out.

use std::collections::BTreeMap;

use rusqlite::{Connection, types::Value as Sql};
use sea_orm::{DbErr, ProxyExecResult, ProxyRow, RuntimeErr, Statement, Value};

use super::columns::{self, Kinds};

/// What went wrong running a statement.
#[derive(Debug)]
pub(super) enum Failure {
    /// SQLite refused it.
    Sqlite(rusqlite::Error),
    /// A parameter or a result value sea-orm and SQLite do not share.
    Value(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sqlite(err)
    }
}

impl Failure {
    /// Whether another connection holds the lock this statement needs (tried again, not reported).
    pub(super) fn is_busy(&self) -> bool {
        matches!(self, Self::Sqlite(err) if matches!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ))
    }

    /// As sea-orm's error: see [`unavailable`]; anything else is the statement's.
    pub(super) fn into_db_err(self, query: bool) -> DbErr {
        match self {
            Self::Value(message) => DbErr::Type(message),
            Self::Sqlite(err) => {
                let message = format!("SQLite: {err}");
                if unavailable(&err) {
                    DbErr::Conn(RuntimeErr::Internal(message))
                } else if query {
                    DbErr::Query(RuntimeErr::Internal(message))
                } else {
                    DbErr::Exec(RuntimeErr::Internal(message))
                }
            }
        }
    }
}

/// Whether `err` means the database is unavailable rather than the statement wrong: busy or locked
/// past the timeout, failing I/O, a full disk, a file it cannot open. Reported as connection errors
/// (`DbErr::Conn`), which `crate::is_unavailable` recognises.
pub(super) fn unavailable(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::CannotOpen
        )
    )
}

/// Runs `statement` (prepared once and kept), returning its rows (none for a write without RETURNING).
pub(super) fn rows(conn: &Connection, kinds: &mut Kinds, statement: &Statement) -> Result<Vec<ProxyRow>, Failure> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    let kinds_of = kinds.of(&prepared, &statement.sql);
    let names: Vec<String> = prepared.column_names().into_iter().map(str::to_owned).collect();
    bind(&mut prepared, statement)?;
    let mut out = Vec::new();
    let mut rows = prepared.raw_query();
    while let Some(row) = rows.next()? {
        let mut values = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let raw = row.get_ref(i)?;
            let kind = kinds_of.get(i).copied().unwrap_or(columns::Kind::Any);
            let value = kind
                .read(raw)
                .ok_or_else(|| Failure::Value(format!("column {name}: {raw:?} does not fit {kind:?}")))?;
            values.insert(name.clone(), value);
        }
        out.push(ProxyRow::new(values));
    }
    Ok(out)
}

/// Runs `statement`, reading and dropping any rows it returns: rows changed and the last rowid.
pub(super) fn execute(conn: &Connection, statement: &Statement) -> Result<ProxyExecResult, Failure> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    bind(&mut prepared, statement)?;
    let writes = !prepared.readonly();
    let mut rows = prepared.raw_query();
    while rows.next()?.is_some() {}
    let changed = if writes { conn.changes() } else { 0 };
    Ok(ProxyExecResult::new(
        u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
        changed,
    ))
}

/// Runs `sql` as it is (several statements allowed, no parameters).
pub(super) fn unprepared(conn: &Connection, sql: &str) -> Result<ProxyExecResult, Failure> {
    let before = conn.total_changes();
    conn.execute_batch(sql)?;
    Ok(ProxyExecResult::new(
        u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
        conn.total_changes().saturating_sub(before),
    ))
}

fn bind(prepared: &mut rusqlite::CachedStatement<'_>, statement: &Statement) -> Result<(), Failure> {
    prepared.clear_bindings();
    let Some(values) = &statement.values else {
        return Ok(());
    };
    for (i, value) in values.0.iter().enumerate() {
        prepared.raw_bind_parameter(i + 1, parameter(value)?)?;
    }
    Ok(())
}

/// A sea-orm value as SQLite stores it.
fn parameter(value: &Value) -> Result<Sql, Failure> {
    let integer = |n: Option<i64>| n.map_or(Sql::Null, Sql::Integer);
    Ok(match value {
        Value::Bool(v) => integer(v.map(i64::from)),
        Value::TinyInt(v) => integer(v.map(i64::from)),
        Value::SmallInt(v) => integer(v.map(i64::from)),
        Value::Int(v) => integer(v.map(i64::from)),
        Value::BigInt(v) => integer(*v),
        Value::TinyUnsigned(v) => integer(v.map(i64::from)),
        Value::SmallUnsigned(v) => integer(v.map(i64::from)),
        Value::Unsigned(v) => integer(v.map(i64::from)),
        Value::BigUnsigned(v) => match v {
            None => Sql::Null,
            Some(n) => Sql::Integer(
                i64::try_from(*n).map_err(|_| Failure::Value(format!("{n} does not fit SQLite's 64-bit integer")))?,
            ),
        },
        Value::Float(v) => v.map_or(Sql::Null, |x| Sql::Real(f64::from(x))),
        Value::Double(v) => v.map_or(Sql::Null, Sql::Real),
        Value::String(v) => v.as_ref().map_or(Sql::Null, |s| Sql::Text(s.clone())),
        Value::Char(v) => v.map_or(Sql::Null, |c| Sql::Text(c.to_string())),
        Value::Bytes(v) => v.as_ref().map_or(Sql::Null, |b| Sql::Blob(b.clone())),
        #[allow(unreachable_patterns)]
        other => return Err(Failure::Value(format!("unsupported parameter type: {other:?}"))),
    })
}
