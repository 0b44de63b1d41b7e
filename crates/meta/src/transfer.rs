//! Copying the embedded store into PostgreSQL (`berth migrate`): every table of the schema,
//! row by row as it is stored (sealed secrets stay sealed), parents before the tables whose
//! foreign keys name them. The two schemas have the same tables and columns (PostgreSQL's
//! migrations say so); a table or column on one side only stops the copy before it writes.
//!
//! Resumable: rows go in batches with `ON CONFLICT DO NOTHING`, so a second run after an
//! interruption adds what the first did not. A row in `data_imports` marks a database an
//! import into has begun; only an empty database, or one this source began, is written to,
//! and a node refuses to start on one whose import has not finished.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;
// Identifiers put into statements come from the two catalogs, quoted (`quoted`).
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use crate::{MetaError, PgMeta, Result, SqliteMeta, now_ms};

/// Tables of the embedded store not carried over, and why.
pub const NOT_CARRIED: &[(&str, &str)] = &[
    (
        "uploads",
        "upload sessions in progress: their bytes are in the source's upload directory; clients start those pushes again",
    ),
    ("leases", "which running node holds scheduled work: none does while the source is stopped"),
];

/// Tables only PostgreSQL has.
const TARGET_ONLY: &[&str] = &["data_imports"];

/// One table's rows on each side after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source_rows: u64,
    /// `None` for a table not carried over.
    pub target_rows: Option<u64>,
    /// Rows this run inserted (the rest were there from an earlier, interrupted run).
    pub copied: u64,
}

/// What the copy reports as it goes.
#[derive(Debug)]
pub enum TableProgress<'a> {
    /// A table's copy begins: it has `rows` in the source.
    Started { table: &'a str, rows: u64 },
    /// `rows` more of the current table were read and sent.
    Rows(u64),
}

/// A column's PostgreSQL type, which says how its SQLite value is read.
#[derive(Debug, Clone, Copy)]
enum ColumnType {
    BigInt,
    Int,
    Bool,
    Text,
    Bytes,
}

enum Value {
    BigInt(Option<i64>),
    Int(Option<i32>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

fn backend(e: sqlx::Error) -> MetaError {
    MetaError::Backend(e.to_string())
}

fn quoted(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The tables in an order that inserts every parent before its children (`edges` are
/// (child, parent) pairs of foreign keys); an error names the tables of a cycle.
pub fn load_order(tables: &BTreeSet<String>, edges: &[(String, String)]) -> Result<Vec<String>> {
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = tables.iter().map(|t| (t.as_str(), BTreeSet::new())).collect();
    for (child, parent) in edges {
        if child != parent
            && tables.contains(parent)
            && let Some(p) = parents.get_mut(child.as_str())
        {
            p.insert(parent.as_str());
        }
    }
    let mut order = Vec::with_capacity(tables.len());
    while !parents.is_empty() {
        let ready: Vec<&str> = parents.iter().filter(|(_, p)| p.is_empty()).map(|(t, _)| *t).collect();
        if ready.is_empty() {
            let rest: Vec<&str> = parents.keys().copied().collect();
            return Err(MetaError::Backend(format!("the foreign keys of {} form a cycle", rest.join(", "))));
        }
        for t in ready {
            parents.remove(t);
            for p in parents.values_mut() {
                p.remove(t);
            }
            order.push(t.to_string());
        }
    }
    Ok(order)
}

/// PostgreSQL's tables with their columns in order.
async fn target_tables(to: &PgMeta) -> Result<BTreeMap<String, Vec<(String, ColumnType)>>> {
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text FROM information_schema.columns c
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.table_name NOT LIKE '\\_sqlx%'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(to.reads())
    .await
    .map_err(backend)?;
    let mut tables: BTreeMap<String, Vec<(String, ColumnType)>> = BTreeMap::new();
    for row in rows {
        let (table, column, kind): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let kind = match kind.as_str() {
            "bigint" => ColumnType::BigInt,
            "integer" => ColumnType::Int,
            "boolean" => ColumnType::Bool,
            "text" => ColumnType::Text,
            "bytea" => ColumnType::Bytes,
            other => {
                return Err(MetaError::Backend(format!(
                    "{table}.{column}: a column of type {other}, which the copy does not know"
                )));
            }
        };
        tables.entry(table).or_default().push((column, kind));
    }
    Ok(tables)
}

async fn source_tables(from: &SqliteMeta) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
    )
    .fetch_all(from.reads())
    .await
    .map_err(backend)?;
    let mut tables = BTreeMap::new();
    for name in names {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(from.reads())
            .await
            .map_err(backend)?;
        tables.insert(name, columns.into_iter().collect());
    }
    Ok(tables)
}

async fn source_rows(from: &SqliteMeta, table: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", quoted(table))))
        .fetch_one(from.reads())
        .await
        .map_err(backend)?;
    Ok(n as u64)
}

async fn target_rows(to: &PgMeta, table: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", quoted(table))))
        .fetch_one(to.reads())
        .await
        .map_err(backend)?;
    Ok(n as u64)
}

/// The tables to copy, in load order with their columns, once both schemas agree.
async fn plan(from: &SqliteMeta, to: &PgMeta) -> Result<Vec<(String, Vec<(String, ColumnType)>)>> {
    let source = source_tables(from).await?;
    let target = target_tables(to).await?;
    let mut problems = Vec::new();
    for (table, columns) in &source {
        if NOT_CARRIED.iter().any(|(t, _)| t == table) {
            continue;
        }
        let Some(target_columns) = target.get(table) else {
            problems.push(format!("table {table} is not in the PostgreSQL schema"));
            continue;
        };
        let target_names: BTreeSet<String> = target_columns.iter().map(|(c, _)| c.clone()).collect();
        for c in columns.difference(&target_names) {
            problems.push(format!("{table}.{c} is not in the PostgreSQL schema"));
        }
        for c in target_names.difference(columns) {
            problems.push(format!("{table}.{c} is not in the embedded schema"));
        }
    }
    for table in target.keys() {
        if !source.contains_key(table) && !TARGET_ONLY.contains(&table.as_str()) {
            problems.push(format!("table {table} is not in the embedded schema"));
        }
    }
    if !problems.is_empty() {
        return Err(MetaError::Backend(format!(
            "the two schemas differ (is this berth older than the data directory?): {}",
            problems.join("; ")
        )));
    }
    let edges: Vec<(String, String)> = sqlx::query(
        "SELECT child.relname::text, parent.relname::text FROM pg_constraint c
         JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid
         WHERE c.contype = 'f' AND child.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(to.reads())
    .await
    .map_err(backend)?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let carried: BTreeSet<String> = source
        .keys()
        .filter(|t| target.contains_key(*t) && !NOT_CARRIED.iter().any(|(n, _)| n == t))
        .cloned()
        .collect();
    Ok(load_order(&carried, &edges)?
        .into_iter()
        .map(|t| {
            let columns = target[&t].clone();
            (t, columns)
        })
        .collect())
}

/// Marks the target as being imported into from `source` (a name for the data directory):
/// refused if it holds data that an import from `source` did not put there.
pub async fn begin(from: &SqliteMeta, to: &PgMeta, source: &str) -> Result<()> {
    let tables = plan(from, to).await?;
    let begun: Option<(String, Option<i64>)> = sqlx::query_as("SELECT source, finished_at FROM data_imports LIMIT 1")
        .fetch_optional(to.reads())
        .await
        .map_err(backend)?;
    match begun.map(|(s, finished)| (s, finished.is_some())) {
        // Finished: nodes may be running on it, and rows deleted there since would come back.
        Some((s, true)) if s == source => {
            return Err(MetaError::Backend(format!(
                "the import from {source} into this database finished already: it is in use now, migrate into an \
                 empty database"
            )));
        }
        Some((s, false)) if s == source => return Ok(()),
        Some((other, _)) => {
            return Err(MetaError::Backend(format!(
                "the target database holds an import from {other}, not {source}: migrate into an empty database"
            )));
        }
        None => {}
    }
    for (table, _) in &tables {
        if target_rows(to, table).await? > 0 {
            return Err(MetaError::Backend(format!(
                "the target database already holds data (table {table} has rows): berth migrate copies into an empty \
                 database, before any node has started on it"
            )));
        }
    }
    sqlx::query("INSERT INTO data_imports (source, started_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(source)
        .bind(now_ms())
        .execute(to.writes())
        .await
        .map_err(backend)?;
    Ok(())
}

/// Records that the import finished: nodes may start on the database.
pub async fn finish(to: &PgMeta, source: &str) -> Result<()> {
    sqlx::query("UPDATE data_imports SET finished_at = $2 WHERE source = $1")
        .bind(source)
        .bind(now_ms())
        .execute(to.writes())
        .await
        .map_err(backend)?;
    Ok(())
}

/// The source of an import into this database that has not finished, if there is one.
pub async fn unfinished_import(to: &PgMeta) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT source FROM data_imports WHERE finished_at IS NULL LIMIT 1")
        .fetch_optional(to.reads())
        .await
        .map_err(backend)
}

/// Rows per insert: PostgreSQL takes at most 65,535 parameters in one statement.
fn batch_rows(columns: usize) -> usize {
    (65_535 / columns.max(1)).min(1000)
}

/// Copies every carried table; the counts of every table of the embedded schema, carried or
/// not, in load order. Every table is read whole each run (a count that matches does not say
/// the rows do); what is there already is left as it is.
pub async fn copy_tables(
    from: &SqliteMeta,
    to: &PgMeta,
    progress: &mut (dyn FnMut(TableProgress<'_>) + Send),
) -> Result<Vec<TableCount>> {
    let mut counts = Vec::new();
    for (table, columns) in plan(from, to).await? {
        let rows = source_rows(from, &table).await?;
        progress(TableProgress::Started { table: &table, rows });
        let copied = copy_table(from, to, &table, &columns, progress).await?;
        counts.push(TableCount {
            table: table.clone(),
            source_rows: rows,
            target_rows: Some(target_rows(to, &table).await?),
            copied,
        });
    }
    reset_identities(to).await?;
    let source = source_tables(from).await?;
    for (table, _) in NOT_CARRIED {
        if source.contains_key(*table) {
            counts.push(TableCount {
                table: table.to_string(),
                source_rows: source_rows(from, table).await?,
                target_rows: None,
                copied: 0,
            });
        }
    }
    Ok(counts)
}

async fn copy_table(
    from: &SqliteMeta,
    to: &PgMeta,
    table: &str,
    columns: &[(String, ColumnType)],
    progress: &mut (dyn FnMut(TableProgress<'_>) + Send),
) -> Result<u64> {
    let names: Vec<String> = columns.iter().map(|(c, _)| quoted(c)).collect();
    let select = format!("SELECT {} FROM {}", names.join(", "), quoted(table));
    let insert = format!("INSERT INTO {} ({}) ", quoted(table), names.join(", "));
    let batch = batch_rows(columns.len());
    let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(from.reads());
    let mut pending: Vec<Vec<Value>> = Vec::with_capacity(batch);
    let mut copied = 0;
    loop {
        let row = rows.try_next().await.map_err(backend)?;
        if let Some(row) = &row {
            let mut values = Vec::with_capacity(columns.len());
            for (i, (column, kind)) in columns.iter().enumerate() {
                let read = |e: sqlx::Error| MetaError::Backend(format!("reading {table}.{column}: {e}"));
                values.push(match kind {
                    ColumnType::BigInt => Value::BigInt(row.try_get(i).map_err(read)?),
                    ColumnType::Int => {
                        let v: Option<i64> = row.try_get(i).map_err(read)?;
                        Value::Int(
                            v.map(i32::try_from)
                                .transpose()
                                .map_err(|e| MetaError::Backend(format!("reading {table}.{column}: {e}")))?,
                        )
                    }
                    ColumnType::Bool => Value::Bool(row.try_get(i).map_err(read)?),
                    ColumnType::Text => Value::Text(row.try_get(i).map_err(read)?),
                    ColumnType::Bytes => Value::Bytes(row.try_get(i).map_err(read)?),
                });
            }
            pending.push(values);
        }
        if pending.len() == batch || (row.is_none() && !pending.is_empty()) {
            let sent = pending.len() as u64;
            let mut query: QueryBuilder<Postgres> = QueryBuilder::new(&insert);
            query.push_values(pending.drain(..), |mut b, values| {
                for v in values {
                    match v {
                        Value::BigInt(v) => b.push_bind(v),
                        Value::Int(v) => b.push_bind(v),
                        Value::Bool(v) => b.push_bind(v),
                        Value::Text(v) => b.push_bind(v),
                        Value::Bytes(v) => b.push_bind(v),
                    };
                }
            });
            query.push(" ON CONFLICT DO NOTHING");
            copied += query.build().execute(to.writes()).await.map_err(backend)?.rows_affected();
            progress(TableProgress::Rows(sent));
        }
        if row.is_none() {
            return Ok(copied);
        }
    }
}

/// Moves every identity column's sequence past the largest id copied, so the next row the
/// registry inserts does not collide with one it brought along.
async fn reset_identities(to: &PgMeta) -> Result<()> {
    let identities: Vec<(String, String)> = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(to.reads())
    .await
    .map_err(backend)?
    .into_iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    for (table, column) in identities {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT max({c}) FROM {t}), 0) + 1, false)",
            c = quoted(&column),
            t = quoted(&table)
        )))
        .bind(quoted(&table))
        .bind(&column)
        .execute(to.writes())
        .await
        .map_err(backend)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn edge(child: &str, parent: &str) -> (String, String) {
        (child.to_string(), parent.to_string())
    }

    #[test]
    fn parents_load_before_their_children() {
        let tables = set(&["tags", "manifests", "repositories", "accounts", "principals"]);
        let edges = [
            edge("tags", "manifests"),
            edge("tags", "repositories"),
            edge("manifests", "repositories"),
            edge("principals", "accounts"),
        ];
        let order = load_order(&tables, &edges).unwrap();
        let at = |t: &str| order.iter().position(|o| o == t).unwrap();
        assert_eq!(order.len(), 5);
        assert!(at("repositories") < at("manifests") && at("manifests") < at("tags"));
        assert!(at("accounts") < at("principals"));
    }

    #[test]
    fn self_references_and_tables_not_copied_do_not_hold_a_table_back() {
        let tables = set(&["a", "b"]);
        let order = load_order(&tables, &[edge("a", "a"), edge("b", "uploads")]).unwrap();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn a_cycle_is_an_error_naming_its_tables() {
        let tables = set(&["a", "b", "c"]);
        let err = load_order(&tables, &[edge("a", "b"), edge("b", "a")]).unwrap_err();
        assert!(err.to_string().contains("a, b"), "{err}");
    }

    async fn embedded(dir: &tempfile::TempDir) -> SqliteMeta {
        use crate::RepositoryStore;
        let meta = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
        for name in ["team/app", "team/web"] {
            meta.create_repository(name, &crate::RepositorySettings::default(), &[]).await.unwrap();
        }
        meta
    }

    fn rows<'a>(counts: &'a [TableCount], table: &str) -> &'a TableCount {
        counts.iter().find(|c| c.table == table).unwrap()
    }

    #[tokio::test]
    async fn a_copy_carries_every_row_once_resumes_and_refuses_another_source() {
        use crate::RepositoryStore;
        let dir = tempfile::tempdir().unwrap();
        let from = embedded(&dir).await;
        let (_db, to) = crate::postgres::tests::scratch().await;
        begin(&from, &to, "/srv/a").await.unwrap();
        assert_eq!(unfinished_import(&to).await.unwrap().as_deref(), Some("/srv/a"));
        let mut quiet = |_: TableProgress<'_>| {};
        let counts = copy_tables(&from, &to, &mut quiet).await.unwrap();
        assert_eq!(
            rows(&counts, "repositories"),
            &TableCount { table: "repositories".into(), source_rows: 2, target_rows: Some(2), copied: 2 }
        );
        assert_eq!(rows(&counts, "uploads").target_rows, None, "upload sessions stay behind");
        assert!(counts.iter().all(|c| c.table != "data_imports"));

        // Run again (after an interruption): nothing is copied twice.
        begin(&from, &to, "/srv/a").await.unwrap();
        let again = copy_tables(&from, &to, &mut quiet).await.unwrap();
        assert!(again.iter().all(|c| c.copied == 0), "{again:?}");
        let other = begin(&from, &to, "/srv/b").await.unwrap_err().to_string();
        assert!(other.contains("holds an import from /srv/a"), "{other}");

        finish(&to, "/srv/a").await.unwrap();
        assert_eq!(unfinished_import(&to).await.unwrap(), None);
        let again = begin(&from, &to, "/srv/a").await.unwrap_err().to_string();
        assert!(again.contains("finished already"), "a finished import is not run again: {again}");
        // The identity sequence starts past the copied ids.
        to.create_repository("team/new", &crate::RepositorySettings::default(), &[]).await.unwrap();
    }

    #[tokio::test]
    async fn a_database_that_holds_data_is_not_copied_into() {
        use crate::RepositoryStore;
        let dir = tempfile::tempdir().unwrap();
        let from = embedded(&dir).await;
        let (_db, to) = crate::postgres::tests::scratch().await;
        to.create_repository("mine", &crate::RepositorySettings::default(), &[]).await.unwrap();
        let err = begin(&from, &to, "/srv/a").await.unwrap_err().to_string();
        assert!(err.contains("already holds data (table repositories has rows)"), "{err}");
        assert_eq!(unfinished_import(&to).await.unwrap(), None);
    }

    #[test]
    fn a_batch_stays_under_postgresql_parameter_limit() {
        assert_eq!(batch_rows(1), 1000);
        assert!(batch_rows(100) * 100 <= 65_535);
    }
}
