//! What type each result column is read as.
//!
//! sea-orm reads a row of ours through values of exactly the variant its field type expects (an `i64`
//! field from `Value::BigInt`, an `i16` from `Value::SmallInt`); SQLite's storage classes (one INTEGER)
//! do not say which, the declared type of the column a value comes from does (SQLite reports it for
//! the columns of a SELECT and of a RETURNING clause alike). sea-query declares `smallint` and
//! `tinyint` as such on SQLite but both `integer()` and `big_integer()` as `integer`, SQLite's 64-bit
//! integer: so `integer` is read as `i64`, and every integer column wider than `smallint` in the
//! services' entities is an `i64` (on PostgreSQL `bigint`: [`crate::WidenToBigint`] migrated the two
//! that were not). Expressions (`COUNT(*)`, `SUM`, PRAGMAs) are read by their storage class: 64-bit
//! integers, as PostgreSQL's aggregates are.

use std::{collections::HashMap, sync::Arc};

use rusqlite::{Statement, types::ValueRef};
use sea_orm::Value;

/// The variant a column's values are read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    TinyInt,
    SmallInt,
    BigInt,
    Double,
    Text,
    Bytes,
    /// No declared type (an expression): by storage class.
    Any,
}

impl Kind {
    /// The kind of a column declared `decl` (SQLite's affinity rules, with the integer widths kept).
    pub(super) fn declared(decl: &str) -> Self {
        let decl = decl.to_ascii_lowercase();
        let has = |s: &str| decl.contains(s);
        if has("bigint") || has("int8") {
            Self::BigInt
        } else if has("smallint") || has("int2") {
            Self::SmallInt
        } else if has("tinyint") {
            Self::TinyInt
        } else if has("int") {
            Self::BigInt
        } else if has("bool") {
            Self::Bool
        } else if has("char") || has("text") || has("clob") || has("string") {
            Self::Text
        } else if has("blob") || has("binary") {
            Self::Bytes
        } else if has("real") || has("floa") || has("doub") {
            Self::Double
        } else {
            Self::Any
        }
    }

    /// `raw` as a value of this kind; `None` when it does not fit (the caller reports it).
    pub(super) fn read(self, raw: ValueRef<'_>) -> Option<Value> {
        Some(match (self, raw) {
            (Self::Bool, ValueRef::Null) => Value::Bool(None),
            (Self::TinyInt, ValueRef::Null) => Value::TinyInt(None),
            (Self::SmallInt, ValueRef::Null) => Value::SmallInt(None),
            (Self::BigInt | Self::Any, ValueRef::Null) => Value::BigInt(None),
            (Self::Double, ValueRef::Null) => Value::Double(None),
            (Self::Text, ValueRef::Null) => Value::String(None),
            (Self::Bytes, ValueRef::Null) => Value::Bytes(None),
            (Self::Bool, ValueRef::Integer(n)) => Value::Bool(Some(n != 0)),
            (Self::TinyInt, ValueRef::Integer(n)) => Value::TinyInt(Some(i8::try_from(n).ok()?)),
            (Self::SmallInt, ValueRef::Integer(n)) => Value::SmallInt(Some(i16::try_from(n).ok()?)),
            (Self::Double, ValueRef::Integer(n)) => Value::Double(Some(n as f64)),
            (_, ValueRef::Integer(n)) => Value::BigInt(Some(n)),
            (_, ValueRef::Real(x)) => Value::Double(Some(x)),
            (Self::Bytes, ValueRef::Text(b) | ValueRef::Blob(b)) => Value::Bytes(Some(b.to_vec())),
            (_, ValueRef::Text(b)) => Value::String(Some(String::from_utf8(b.to_vec()).ok()?)),
            (_, ValueRef::Blob(b)) => Value::Bytes(Some(b.to_vec())),
        })
    }
}

/// The kinds of the result columns of the statements run so far, by SQL text.
#[derive(Default)]
pub(super) struct Kinds(HashMap<String, Arc<[Kind]>>);

/// Distinct statements remembered (the services run a few dozen).
const REMEMBERED: usize = 1024;

impl Kinds {
    /// The kinds of `statement`'s result columns (`sql` is its text).
    pub(super) fn of(&mut self, statement: &Statement<'_>, sql: &str) -> Arc<[Kind]> {
        if let Some(kinds) = self.0.get(sql) {
            return Arc::clone(kinds);
        }
        let kinds: Arc<[Kind]> = statement
            .columns()
            .iter()
            .map(|column| column.decl_type().map_or(Kind::Any, Kind::declared))
            .collect();
        if self.0.len() >= REMEMBERED {
            self.0.clear();
        }
        self.0.insert(sql.to_owned(), Arc::clone(&kinds));
        kinds
    }

    /// Forgets everything: the schema changed.
    pub(super) fn forget(&mut self) {
        self.0.clear();
    }
}

/// Whether `sql` changes the schema (the remembered kinds no longer hold).
pub(super) fn changes_schema(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("");
    ["CREATE", "ALTER", "DROP"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_keep_their_integer_width() {
        assert_eq!(Kind::declared("bigint"), Kind::BigInt);
        assert_eq!(
            Kind::declared("integer"),
            Kind::BigInt,
            "integer() and big_integer() alike"
        );
        assert_eq!(Kind::declared("smallint"), Kind::SmallInt);
        assert_eq!(Kind::declared("varchar"), Kind::Text);
        assert_eq!(Kind::declared("text"), Kind::Text);
        assert_eq!(Kind::declared("blob"), Kind::Bytes);
        assert_eq!(Kind::declared("boolean"), Kind::Bool);
        assert_eq!(Kind::declared("timestamp_text"), Kind::Text);
        assert_eq!(Kind::declared("real_decimal"), Kind::Double);
    }

    #[test]
    fn a_value_that_does_not_fit_its_column_is_refused() {
        assert_eq!(
            Kind::SmallInt.read(ValueRef::Integer(7)),
            Some(Value::SmallInt(Some(7)))
        );
        assert_eq!(Kind::SmallInt.read(ValueRef::Integer(1 << 20)), None);
        assert_eq!(
            Kind::Any.read(ValueRef::Integer(1 << 40)),
            Some(Value::BigInt(Some(1 << 40)))
        );
        assert_eq!(Kind::Text.read(ValueRef::Null), Some(Value::String(None)));
    }
}
