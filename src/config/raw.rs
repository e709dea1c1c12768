//! The file as the parser sees it: one raw struct per section, each beside its validation in the section's
//! file, and here the top level that holds them.
//!
//! Owns: the top-level raw struct and the check that the raw mirror and the key table name the same keys.
//! Must never: hold a value past validation; nothing outside `config` sees these types.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{behavior, db, job, metrics, notify, watch};

/// A value as written, with where: `None` when the key is absent.
pub(super) type S<T> = Option<Spanned<T>>;

/// The file as written: one optional raw struct per section (`deny_unknown_fields`: a key the table does not
/// have is refused by the parser, after [`super::lint`] has said it in our words).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) watch: Option<watch::RawWatch>,
    pub(super) job: Option<job::RawJob>,
    pub(super) behavior: Option<behavior::RawBehavior>,
    pub(super) metrics: Option<metrics::RawMetrics>,
    pub(super) notify: Option<notify::RawNotify>,
    pub(super) db: Option<db::RawDb>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::{self, Deserializer, MapAccess, Visitor};

    use super::super::keys;
    use super::*;

    /// A deserializer that only notes the field names a struct asks for (serde's derive passes every
    /// accepted name to `deserialize_struct`), then gives it an empty map: every raw field is optional,
    /// so the struct deserializes, and the names are exactly what the parser accepts.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    #[derive(Debug)]
    struct Unsupported(String);

    impl std::fmt::Display for Unsupported {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Unsupported {}

    impl de::Error for Unsupported {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Unsupported(msg.to_string())
        }
    }

    struct NoEntries;

    impl<'de> MapAccess<'de> for NoEntries {
        type Error = Unsupported;
        fn next_key_seed<K: de::DeserializeSeed<'de>>(
            &mut self,
            _: K,
        ) -> Result<Option<K::Value>, Unsupported> {
            Ok(None)
        }
        fn next_value_seed<V: de::DeserializeSeed<'de>>(
            &mut self,
            _: V,
        ) -> Result<V::Value, Unsupported> {
            Err(Unsupported("no values".into()))
        }
    }

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = Unsupported;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Unsupported> {
            Err(Unsupported("only structs".into()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Unsupported> {
            self.0.extend_from_slice(fields);
            visitor.visit_map(NoEntries)
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    /// The keys a raw struct accepts, as the parser would.
    fn fields_of<'de, T: Deserialize<'de>>() -> BTreeSet<&'static str> {
        let mut names = Vec::new();
        T::deserialize(FieldNames(&mut names)).expect("every raw field is optional");
        names.into_iter().collect()
    }

    fn table_keys(section: &str) -> BTreeSet<&'static str> {
        keys::ALL
            .iter()
            .filter(|k| k.section() == section)
            .map(|k| k.leaf())
            .collect()
    }

    /// A raw field without a row in the key table (or a row without a raw field) fails here: the table
    /// is what `--help`, the README, `check-config` and the misspelling hints know of.
    #[test]
    fn every_raw_field_has_a_row_in_the_key_table_and_back() {
        let sections = [
            ("watch", fields_of::<watch::RawWatch>()),
            ("job", fields_of::<job::RawJob>()),
            ("behavior", fields_of::<behavior::RawBehavior>()),
            ("metrics", fields_of::<metrics::RawMetrics>()),
            ("notify", fields_of::<notify::RawNotify>()),
            ("db", fields_of::<db::RawDb>()),
        ];
        for (section, raw) in &sections {
            let table = table_keys(section);
            let no_row: Vec<_> = raw.difference(&table).collect();
            let no_field: Vec<_> = table.difference(raw).collect();
            assert!(
                no_row.is_empty() && no_field.is_empty(),
                "`{section}:` raw fields without a row in keys.rs: {no_row:?}; rows without a raw field: {no_field:?}"
            );
        }
        let mut table_sections: Vec<&str> = keys::ALL.iter().map(|k| k.section()).collect();
        table_sections.dedup();
        let raw_sections = fields_of::<RawConfig>();
        assert_eq!(
            raw_sections,
            table_sections.iter().copied().collect::<BTreeSet<_>>()
        );
        assert_eq!(
            sections.map(|(s, _)| s).to_vec(),
            table_sections,
            "every section is checked"
        );
    }

    /// The recorder sees a struct's fields: a made-up struct with a field the table lacks is caught.
    #[test]
    fn the_field_recorder_sees_every_field() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Two {
            a: Option<String>,
            #[serde(rename = "b_sec")]
            b: Option<f64>,
        }
        assert_eq!(fields_of::<Two>(), BTreeSet::from(["a", "b_sec"]));
    }
}
