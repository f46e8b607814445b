//! A deployed schema becomes the catalog: its tables and indexes exist, and with
//! `schemaValidation` every insert, replace and patch is checked against the table's
//! `documentType`; a document that does not match is refused and nothing is written.

use std::sync::Arc;

use store::{MvccStore, Timestamp};
use txn::{Catalog, CreationClock, IdGenerator, Object, SystemClock, Transaction, TxnError};
use udf::catalog_from_schema;
use value::Value;

/// The shape `schema.js`'s `export()` returns (research/convex-protocol.md §4.9).
fn schema(validation: bool) -> String {
    format!(
        r#"{{"tables":[
          {{"tableName":"users","indexes":[],"stagedDbIndexes":[],"searchIndexes":[],
            "stagedSearchIndexes":[],"vectorIndexes":[],"stagedVectorIndexes":[],
            "documentType":{{"type":"object","value":{{"name":{{"fieldType":{{"type":"string"}},"optional":false}}}}}}}},
          {{"tableName":"messages","indexes":[{{"indexDescriptor":"by_author","fields":["author"]}},
                                              {{"indexDescriptor":"by_meta","fields":["meta.kind","n"]}}],
            "documentType":{{"type":"object","value":{{
              "author":{{"fieldType":{{"type":"id","tableName":"users"}},"optional":false}},
              "body":{{"fieldType":{{"type":"string"}},"optional":false}},
              "n":{{"fieldType":{{"type":"number"}},"optional":true}}}}}}}},
          {{"tableName":"loose","indexes":[],"documentType":{{"type":"any"}}}}
        ],"schemaValidation":{validation}}}"#
    )
}

fn txn(catalog: Catalog) -> Transaction {
    Transaction::new(
        Arc::new(MvccStore::in_memory()),
        Arc::new(catalog),
        Timestamp(1),
        IdGenerator::seeded(7),
        Arc::new(CreationClock::new(Arc::new(SystemClock))),
    )
}

fn obj(fields: &[(&str, Value)]) -> Object {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

#[test]
fn tables_and_indexes_come_from_the_schema() {
    let catalog = catalog_from_schema(&schema(true), 10001).expect("schema");
    let users = catalog.table_named("users").expect("users");
    let messages = catalog.table_named("messages").expect("messages");
    assert_eq!(users.number.get(), 10001);
    assert_eq!(messages.number.get(), 10002);
    let by_meta = messages.index_named("by_meta").expect("index");
    assert_eq!(
        by_meta.fields,
        vec![
            vec!["meta".to_string(), "kind".to_string()],
            vec!["n".to_string()]
        ]
    );
    assert!(messages.index_named("by_creation_time").is_some());
    assert!(messages.schema.is_some());
    // `{"type":"any"}` checks nothing.
    assert!(
        catalog
            .table_named("loose")
            .expect("loose")
            .schema
            .is_none()
    );
}

#[test]
fn documents_must_match_the_schema() {
    let catalog = catalog_from_schema(&schema(true), 10001).expect("schema");
    let users = catalog.table_named("users").expect("users").number;
    let messages = catalog.table_named("messages").expect("messages").number;
    let mut t = txn(catalog);
    let alice = t
        .insert(users, obj(&[("name", s("alice"))]))
        .expect("valid user");
    let ok = t
        .insert(
            messages,
            obj(&[("author", s(&alice.encode())), ("body", s("hi"))]),
        )
        .expect("valid message");

    for (what, bad) in [
        (
            "wrong type",
            obj(&[
                ("author", s(&alice.encode())),
                ("body", Value::Float64(1.0)),
            ]),
        ),
        ("missing field", obj(&[("author", s(&alice.encode()))])),
        (
            "extra field",
            obj(&[
                ("author", s(&alice.encode())),
                ("body", s("x")),
                ("zzz", Value::Null),
            ]),
        ),
        (
            "id of another table",
            obj(&[("author", s(&ok.encode())), ("body", s("x"))]),
        ),
    ] {
        match t.insert(messages, bad) {
            Err(TxnError::SchemaViolation { table, message }) => {
                assert_eq!(table, "messages", "{what}");
                assert!(!message.is_empty(), "{what}");
            }
            other => panic!("{what}: expected a schema violation, got {other:?}"),
        }
    }
    // Replace and patch are checked too, and a refused write changes nothing.
    assert!(matches!(
        t.replace(&ok, obj(&[("author", s(&alice.encode()))])),
        Err(TxnError::SchemaViolation { .. })
    ));
    let mut patch = txn::Patch::new();
    patch.insert("n".into(), Some(s("not a number")));
    assert!(matches!(
        t.patch(&ok, patch),
        Err(TxnError::SchemaViolation { .. })
    ));
    let stored = t.get(&ok).expect("get").expect("exists");
    assert_eq!(stored.get("body"), Some(&s("hi")));
    assert_eq!(stored.get("n"), None);
    let mut fine = txn::Patch::new();
    fine.insert("n".into(), Some(Value::Float64(3.0)));
    t.patch(&ok, fine).expect("a matching patch");
    // Only the valid writes are in the transaction.
    let finished = t.finish().expect("finish");
    assert_eq!(finished.documents.len(), 2);
}

#[test]
fn without_schema_validation_anything_goes() {
    let catalog = catalog_from_schema(&schema(false), 10001).expect("schema");
    let messages = catalog.table_named("messages").expect("messages");
    assert!(messages.schema.is_none());
    let number = messages.number;
    let mut t = txn(catalog);
    t.insert(number, obj(&[("whatever", Value::Int64(1))]))
        .expect("unchecked");
}

#[test]
fn malformed_schemas_are_refused() {
    for bad in [
        "not json",
        "{}",
        r#"{"tables":[{"indexes":[]}]}"#,
        r#"{"tables":[{"tableName":"t","indexes":[{"fields":["a"]}]}]}"#,
        r#"{"tables":[{"tableName":"t","documentType":{"type":"nonsense"}}]}"#,
        r#"{"tables":[],"schemaValidation":"yes"}"#,
    ] {
        assert!(catalog_from_schema(bad, 10001).is_err(), "{bad}");
    }
}
