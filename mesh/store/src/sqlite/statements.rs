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

    /// As sea-orm's error (see [`Failed::to_db_err`]); a value that does not fit is a type error.
    pub(super) fn into_db_err(self, query: bool) -> DbErr {
        match self {
            Self::Value(message) => DbErr::Type(message),
            Self::Sqlite(err) => Failed::of(&err).to_db_err(query),
        }
    }
}

/// A SQLite error as kept and told to callers — to every member of a group alike.
#[derive(Debug, Clone)]
pub(super) struct Failed {
    /// The database is unavailable (busy past the timeout, a full disk, failing I/O): retry later.
    pub(super) unavailable: bool,
    pub(super) message: String,
}

impl Failed {
    pub(super) fn of(err: &rusqlite::Error) -> Self {
        Self {
            unavailable: crate::unavailable::sqlite_unavailable(err),
            message: format!("SQLite: {err}"),
        }
    }

    /// As sea-orm's error: an unavailable database is a connection error (`DbErr::Conn`, which
    /// `crate::is_unavailable` recognises); anything else is the statement's.
    pub(super) fn to_db_err(&self, query: bool) -> DbErr {
        let err = RuntimeErr::Internal(self.message.clone());
        if self.unavailable {
            DbErr::Conn(err)
        } else if query {
            DbErr::Query(err)
        } else {
            DbErr::Exec(err)
        }
    }
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
